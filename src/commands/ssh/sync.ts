import {Flags} from '@oclif/core'
import {BaseCommand} from '../../base-command.js'
import {EXIT, usageError} from '../../core/errors.js'
import {checkOathPath, compareUsersFile, DEFAULT_OATH_FILE, oathUsers} from '../../core/oath.js'

/** pam_oath reads a local file only; a database store serves SSH through RADIUS instead. */
export const RADIUS_INSTEAD =
  'a database store keeps no pam_oath users file (pam_oath reads only a local file): serve SSH codes with tfactl radius:serve and pam_radius_auth instead'

export default class Sync extends BaseCommand<typeof Sync> {
  static override description = `write the pam_oath users file that sshd checks codes with

One line per user with a secret while 2FA and SSH 2FA are on; otherwise the file has no user
lines (it must exist: without it pam_oath refuses every password login). The path is remembered:
afterwards every tfactl change re-syncs the file. It holds the secrets in clear (mode 0600, root),
because pam_oath needs them. pam_oath's own replay fields (last code and time) are kept.
With --check nothing is written: exit 0 when the file's users, types and secrets match the
store, 1 when it is stale.`
  static override examples = [
    'sudo <%= config.bin %> ssh:sync',
    'sudo <%= config.bin %> ssh:sync --oath-file /etc/users.oath --json',
    'sudo <%= config.bin %> ssh:sync --check --json',
  ]
  static override flags = {
    'oath-file': Flags.string({description: `pam_oath users file to write (remembered) [default: the remembered one, else ${DEFAULT_OATH_FILE}]`}),
    check: Flags.boolean({description: 'only compare the file with the store: exit 0 fresh, 1 stale'}),
  }

  async run() {
    if (!this.store.localOathFile || !this.store.usersFile) throw usageError(RADIUS_INSTEAD)
    const given = this.flags['oath-file'] === undefined ? undefined : checkOathPath(this.flags['oath-file'])
    return this.flags.check ? this.check(given) : this.sync(given)
  }

  private async sync(given: string | undefined) {
    let remembered: string | null = null
    await this.store.update((doc) => {
      remembered = doc.settings.oathFile
      doc.settings.oathFile = given ?? doc.settings.oathFile ?? DEFAULT_OATH_FILE
    })
    const report = this.store.oathSync!
    const changed = report.changed || remembered !== report.path
    this.say(`${report.path}: ${report.users.length} user(s) with 2FA over SSH${report.changed ? ', written' : ', already up to date'}`)
    if (remembered !== report.path) this.say(`tfactl now keeps ${report.path} in step with the store`)
    return {path: report.path, users: report.users, imported: report.imported, changed}
  }

  private async check(given: string | undefined) {
    const doc = await this.store.read()
    const path = given ?? doc.settings.oathFile ?? DEFAULT_OATH_FILE
    const file = this.store.usersFile!.read(path)
    const f = compareUsersFile(oathUsers(doc), file?.entries)
    process.exitCode = f.fresh ? EXIT.ok : EXIT.denied
    if (f.fresh) this.say(`${path}: up to date`)
    else if (!f.exists) this.say(`${path}: missing (pam_oath refuses every password login): run tfactl ssh:sync`)
    else {
      const parts = [
        f.missing.length > 0 && `missing ${f.missing.join(', ')}`,
        f.extra.length > 0 && `should not list ${f.extra.join(', ')}`,
        f.different.length > 0 && `wrong line for ${f.different.join(', ')}`,
      ]
      this.say(`${path}: stale (${parts.filter(Boolean).join('; ')}): run tfactl ssh:sync`)
    }
    return {path, ...f}
  }

  /** --check is a read-only probe (monitoring may run it every minute): no audit line. */
  public override async finally(error: Error | undefined): Promise<void> {
    if (this.flags?.check) return
    return super.finally(error)
  }
}
