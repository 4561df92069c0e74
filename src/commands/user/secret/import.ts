import {Args, Flags} from '@oclif/core'
import {readFileSync} from 'node:fs'
import {readStdin} from '../../../args.js'
import {BaseCommand} from '../../../base-command.js'
import {hashCodes} from '../../../core/codes.js'
import {usageError} from '../../../core/errors.js'
import {checkSecret, type Imported, parseGoogleAuthenticator, parseUsersOath} from '../../../core/importers.js'
import type {Digits, Doc, Interval} from '../../../core/model.js'
import {activate} from '../../../core/users.js'

/** `user:secret:import --json`. */
export interface ImportResult {
  users: {user: string; interval: number; digits: number; algorithm: string; recoveryCodes: number; changed: boolean}[]
}

export default class Import extends BaseCommand<typeof Import> {
  static override description = `bring existing enrolments over without re-scanning phones

Codes that worked before keep working. Sources: a base32 secret on stdin, a google-authenticator
file (its scratch codes become recovery codes), or a pam_oath users file (TOTP lines only).
The whole input is checked first; any problem → exit 2 with FILE:LINE, nothing written.`
  static override examples = [
    'printf "%s" "$SECRET" | <%= config.bin %> user:secret:import alice --secret-stdin',
    'sudo <%= config.bin %> user:secret:import --from google-authenticator /home/alice/.google_authenticator --user alice',
    'sudo <%= config.bin %> user:secret:import --from users.oath /etc/users.oath --json',
  ]
  static override args = {target: Args.string({description: 'USERNAME (with --secret-stdin) or FILE (with --from)', ignoreStdin: true})}
  static override flags = {
    'secret-stdin': Flags.boolean({description: 'read a base32 secret for USERNAME from stdin', exclusive: ['from']}),
    from: Flags.string({description: 'format of FILE', options: ['google-authenticator', 'users.oath']}),
    user: Flags.string({description: 'user the google-authenticator file belongs to'}),
    interval: Flags.string({description: 'seconds per code, with --secret-stdin', options: ['30', '60'], default: '30'}),
    digits: Flags.string({description: 'digits per code, with --secret-stdin', options: ['6', '7', '8'], default: '6'}),
    code: Flags.string({description: 'a current code or recovery code, to replace your own secret under sudo (- reads it from stdin)'}),
  }

  async run(): Promise<ImportResult> {
    const imported = await this.readInput()
    for (const entry of imported) this.auditUsers.add(entry.user)
    const now = Date.now()
    const same = (doc: Doc, entry: Imported) => {
      const record = doc.users.get(entry.user)
      return record?.secret === entry.secret && record.interval === entry.interval && record.digits === entry.digits
    }
    const proof = await this.codeFlag(this.flags.code)
    const changed = await this.selfServiceUpdate(
      (doc) => imported.filter((e) => !same(doc, e)).map((e) => e.user),
      proof,
      (doc) => {
        const changed = new Set<string>()
        for (const entry of imported) {
          if (same(doc, entry)) continue
          activate(doc, entry.user, {
            secret: entry.secret,
            interval: entry.interval,
            digits: entry.digits,
            algorithm: 'SHA1',
            createdAt: new Date(now).toISOString(),
          })
          if (entry.scratchCodes.length > 0) doc.users.get(entry.user)!.recovery = hashCodes(entry.scratchCodes)
          changed.add(entry.user)
        }
        return changed
      },
    )
    const users = imported.map((e) => ({
      user: e.user,
      interval: e.interval,
      digits: e.digits,
      algorithm: 'SHA1',
      recoveryCodes: e.scratchCodes.length,
      changed: changed.has(e.user),
    }))
    for (const u of users)
      this.say(`${u.user}: ${u.changed ? 'imported' : 'already had this secret'}${u.recoveryCodes ? ` (${u.recoveryCodes} recovery codes)` : ''}`)
    return {users}
  }

  /** Everything is parsed and validated before the store is opened. */
  private async readInput(): Promise<Imported[]> {
    const {target} = this.args
    const f = this.flags
    if (f['secret-stdin']) {
      const user = this.targetUser(target)
      const secret = checkSecret(await readStdin(), 'stdin')
      return [{user, secret, interval: Number(f.interval) as Interval, digits: Number(f.digits) as Digits, scratchCodes: []}]
    }
    if (!f.from || target === undefined) throw usageError('say what to import: USERNAME --secret-stdin, or --from google-authenticator|users.oath FILE')
    const text = readSource(target)
    if (f.from === 'users.oath') return parseUsersOath(text, target)
    if (f.user === undefined) throw usageError('--from google-authenticator needs --user: the user the file belongs to')
    this.auditUser = f.user
    return [parseGoogleAuthenticator(text, target, f.user)]
  }
}

function readSource(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (error) {
    throw usageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
}
