import {Flags} from '@oclif/core'
import {BaseCommand} from '../../base-command.js'
import {checkOathPath} from '../../core/oath.js'
import {usageError} from '../../core/errors.js'
import {RADIUS_INSTEAD} from '../ssh/sync.js'
import {enableSettings, sameSettings, stigMissing} from '../../core/settings.js'
import {checkIssuer} from '../../core/validate.js'
import {ADMIN_GROUPS, clockSynced, hostAdmins} from '../../os/clock.js'
import {publicSettings, settingsLines} from '../../ui/output.js'

export default class Enable extends BaseCommand<typeof Enable> {
  static override description = 'turn 2FA on globally; only the settings given change'
  static override examples = [
    '<%= config.bin %> twofactor:enable',
    '<%= config.bin %> twofactor:enable --window 1 --ssh --issuer "NAS office"',
    '<%= config.bin %> twofactor:enable --stig',
    '<%= config.bin %> twofactor:enable --max-failures 5 --lockout 300 --fail-delay 1000',
    'sudo <%= config.bin %> twofactor:enable --ssh --oath-file /etc/users.oath',
  ]
  static override flags = {
    window: Flags.integer({
      description: "codes from this many time steps (each user's own 30 or 60 s) before and after now count (0-10) [default: 1]",
      min: 0,
      max: 10,
    }),
    ssh: Flags.boolean({description: 'require codes for password-based SSH logins', allowNo: true}),
    stig: Flags.boolean({description: 'STIG mode: 2FA mandatory for every web/API login; 2FA and SSH 2FA cannot be turned off', allowNo: true}),
    issuer: Flags.string({description: 'name shown in authenticator apps (1-64 characters, no ":") [default: tfactl]'}),
    'max-failures': Flags.integer({description: 'consecutive failed checks that lock a user, 0 = never (0-100) [default: 5]', min: 0, max: 100}),
    lockout: Flags.integer({description: 'seconds a lockout lasts (1-86400) [default: 300]', min: 1, max: 86_400}),
    'fail-delay': Flags.integer({description: 'milliseconds a failed check waits before answering (0-10000) [default: 1000]', min: 0, max: 10_000}),
    'oath-file': Flags.string({description: 'pam_oath users file for sshd, kept in sync from now on (see ssh:sync)'}),
  }

  async run() {
    const f = this.flags
    if (f['oath-file'] !== undefined && !this.store.localOathFile) throw usageError(`--oath-file: ${RADIUS_INSTEAD}`)
    const change = {
      window: f.window,
      ssh: f.ssh,
      stig: f.stig,
      issuer: f.issuer === undefined ? undefined : checkIssuer(f.issuer),
      maxFailures: f['max-failures'],
      lockout: f.lockout,
      failDelay: f['fail-delay'],
      oathFile: f['oath-file'] === undefined ? undefined : checkOathPath(f['oath-file']),
    }
    const admins = f.stig ? hostAdmins() : []
    const {settings, changed} = await this.store.update((doc) => {
      const before = doc.settings
      const next = enableSettings(before, change)
      const missing = next.stig && !before.stig ? stigMissing(doc, admins, ADMIN_GROUPS) : undefined
      if (missing) throw usageError(`--stig: STIG mode would shut every administrator out; it needs ${missing}`)
      doc.settings = next
      return {settings: doc.settings, changed: !sameSettings(before, doc.settings)}
    })
    if (clockSynced() !== true) this.warning('the system clock is not known to be NTP-synchronised; codes depend on the time (check timedatectl)')
    this.say(changed ? '2FA enabled' : '2FA already enabled with these settings')
    for (const line of settingsLines(settings)) this.say(`  ${line}`)
    const oath = this.store.oathSync
    if (settings.ssh && !this.store.localOathFile)
      this.warning('SSH 2FA is on: with a database store sshd checks codes through tfactl radius:serve and pam_radius_auth')
    else if (settings.ssh && !settings.oathFile)
      this.warning('SSH 2FA is on, but sshd asks for no code until the pam_oath users file exists: run tfactl ssh:sync and tfactl ssh:config')
    if (oath) this.say(`  users file:   ${oath.path} (${oath.users.length} user(s)${oath.changed ? ', written' : ''})`)
    return {...publicSettings(settings), oathFile: settings.oathFile, changed: changed || Boolean(oath?.changed)}
  }
}
