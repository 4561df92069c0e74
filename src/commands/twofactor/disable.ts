import {Flags} from '@oclif/core'
import {BaseCommand} from '../../base-command.js'
import {checkOathPath} from '../../core/oath.js'
import {disableSettings} from '../../core/settings.js'

export default class Disable extends BaseCommand<typeof Disable> {
  static override description = `emergency bypass: turn 2FA off for everyone, keeping every secret (re-enabling restores them)

Works without the key file: the settings are not sealed, so when the secrets cannot be opened
only the settings are rewritten and every sealed record is carried over untouched.
--force (root) gets 2FA off whatever state the files are in: a store that cannot be used is moved
aside (<store>.broken-<UTC time>, never deleted) and replaced by a valid one with 2FA off
(settings from .bak when it is valid, else defaults), a pam_oath .lock no process has open is
removed, and the users file is rewritten so that sshd asks for no code.`
  static override examples = [
    '<%= config.bin %> twofactor:disable',
    'sudo <%= config.bin %> twofactor:disable --json',
    'sudo <%= config.bin %> twofactor:disable --force',
    'sudo <%= config.bin %> twofactor:disable --force --no-stig',
  ]
  static override flags = {
    force: Flags.boolean({description: 'root only: get 2FA off whatever state the files are in (moves aside what cannot be used, never deletes)'}),
    'no-stig': Flags.boolean({description: 'with --force: leave STIG mode first (STIG mode otherwise refuses, exit 4)', dependsOn: ['force']}),
    'oath-file': Flags.string({
      description: "with --force: the pam_oath users file sshd reads, when the store cannot tell (its PAM line's usersfile=)",
      dependsOn: ['force'],
    }),
  }

  async run() {
    if (this.flags.force) return this.force()
    // Without the key (a file store's capability): only the settings are rewritten, every sealed
    // record carried over; undefined when the ordinary update is the right one.
    const sealed = this.store.repair ? await this.store.repair.updateSettingsSealed(disableSettings) : undefined
    if (!sealed) return this.disable()
    const {before, problem} = sealed
    const changed = before.enabled
    if (problem) {
      this.auditOutcome = {outcome: 'ok', reason: 'sealed_only'}
      this.warning(
        `the secrets cannot be opened (${problem}); only the settings were rewritten, every sealed record is kept as it was: put the key back before turning 2FA on again`,
      )
    }
    this.say(changed ? '2FA disabled: logins need the password only; secrets are kept' : '2FA was already off')
    return problem ? {enabled: false, changed, sealedOnly: true} : {enabled: false, changed}
  }

  /** The ordinary update (a database store, or a users file whose replay state must be kept). */
  private async disable() {
    const changed = await this.store.update((doc) => {
      const was = doc.settings.enabled
      doc.settings = disableSettings(doc.settings)
      return was
    })
    this.say(changed ? '2FA disabled: logins need the password only; secrets are kept' : '2FA was already off')
    return {enabled: false, changed}
  }

  private async force() {
    this.requireRoot('twofactor:disable --force')
    const repair = this.repair('twofactor:disable --force')
    const oathFile = this.flags['oath-file'] === undefined ? undefined : checkOathPath(this.flags['oath-file'])
    const report = await repair.forceDisable({leaveStig: this.flags['no-stig'], oathFile})
    const note = (outcome: string, reason: string) => this.store.recordEvent('twofactor:disable', null, {outcome, reason})
    for (const path of report.movedAside) await note('moved_aside', path)
    for (const path of report.removedLocks) await note('removed_lock', path)
    if (report.usersFile?.savedCopy) await note('users_file_copied', report.usersFile.savedCopy)
    if (report.usersFile?.changed) await note('users_file_rewritten', report.usersFile.path)
    this.auditOutcome = {outcome: 'ok', reason: this.flags['no-stig'] ? 'forced_left_stig' : 'forced'}
    for (const w of report.warnings) this.warning(w)
    for (const path of report.movedAside) this.say(`moved aside: ${path}`)
    for (const path of report.removedLocks) this.say(`removed stale lock: ${path} (no process had it open)`)
    if (report.usersFile?.savedCopy) this.say(`users file lines before: copied to ${report.usersFile.savedCopy} (0600; secrets in clear)`)
    if (report.usersFile) this.say(`users file: ${report.usersFile.path} lists nobody${report.usersFile.changed ? ' (rewritten)' : ''}: sshd asks for no code`)
    if (report.settingsFrom !== 'store')
      this.say(`new store written with 2FA off (settings from ${report.settingsFrom === 'backup' ? repair.backup : 'the defaults'})`)
    this.say(report.changed ? '2FA disabled: logins need the password only' : '2FA was already off; nothing needed repair')
    return {
      enabled: false,
      changed: report.changed,
      movedAside: report.movedAside,
      usersFile: report.usersFile,
      removedLocks: report.removedLocks,
      warnings: report.warnings,
      settingsFrom: report.settingsFrom,
      unreadable: report.unreadable,
    }
  }
}
