import {Args, Flags} from '@oclif/core'
import {readFileSync} from 'node:fs'
import {readStdin} from '../../../args.js'
import {BaseCommand} from '../../../base-command.js'
import {hashCodes} from '../../../core/codes.js'
import {base32Encode} from '../../../core/base32.js'
import {TfaError, usageError} from '../../../core/errors.js'
import {setDrift} from '../../../core/login.js'
import {assignTokens, parseAssignments, pskcKey, readPskc} from '../../../core/pskc.js'
import {checkSecret, type Imported, parseGoogleAuthenticator, parseUsersOath} from '../../../core/importers.js'
import type {Digits, Doc, Interval} from '../../../core/model.js'
import {activate} from '../../../core/users.js'

export default class Import extends BaseCommand<typeof Import> {
  static override description = `bring existing enrolments over without re-scanning phones

Codes that worked before keep working. Sources: a base32 secret on stdin, a google-authenticator
file (its scratch codes become recovery codes), a pam_oath users file (TOTP lines only), or the
PSKC file (RFC 6030) of hardware tokens with --assign mapping their serials to users (plain, or
encrypted with --pskc-key-file or --pskc-password -; TOTP tokens only).
The whole input is checked first; any problem → exit 2 with FILE:LINE, nothing written.`
  static override examples = [
    'printf "%s" "$SECRET" | <%= config.bin %> user:secret:import alice --secret-stdin',
    'sudo <%= config.bin %> user:secret:import --from google-authenticator /home/alice/.google_authenticator --user alice',
    'sudo <%= config.bin %> user:secret:import --from users.oath /etc/users.oath --json',
    'sudo <%= config.bin %> user:secret:import --from pskc tokens.pskcxml --assign serials.csv --pskc-key-file transport.key --json',
    'printf "%s\\n" "$PASSWORD" | sudo <%= config.bin %> user:secret:import --from pskc tokens.pskcxml --assign serials.csv --pskc-password -',
  ]
  static override args = {target: Args.string({description: 'USERNAME (with --secret-stdin) or FILE (with --from)', ignoreStdin: true})}
  static override flags = {
    'secret-stdin': Flags.boolean({description: 'read a base32 secret for USERNAME from stdin', exclusive: ['from']}),
    from: Flags.string({description: 'format of FILE', options: ['google-authenticator', 'users.oath', 'pskc']}),
    assign: Flags.string({description: 'with --from pskc: file of serial,user lines, one per token to import (- = stdin)'}),
    'pskc-key-file': Flags.string({description: 'with --from pskc: the pre-shared AES-128 key (16 raw bytes or 32 hex digits)'}),
    'pskc-password': Flags.string({description: 'with --from pskc: - reads the password of a password-encrypted file from stdin (first line)'}),
    user: Flags.string({description: 'user the google-authenticator file belongs to'}),
    interval: Flags.string({description: 'seconds per code, with --secret-stdin', options: ['30', '60'], default: '30'}),
    digits: Flags.string({description: 'digits per code, with --secret-stdin', options: ['6', '7', '8'], default: '6'}),
    code: Flags.string({description: 'a current code or recovery code, to replace your own secret under sudo (- reads it from stdin)'}),
  }

  async run() {
    const imported = await this.readInput()
    for (const entry of imported) this.auditUsers.add(entry.user)
    const now = Date.now()
    const same = (doc: Doc, entry: Imported) => {
      const record = doc.users.get(entry.user)
      return (
        record?.secret === entry.secret &&
        record.interval === entry.interval &&
        record.digits === entry.digits &&
        record.algorithm === (entry.algorithm ?? 'SHA1')
      )
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
            algorithm: entry.algorithm ?? 'SHA1',
            createdAt: new Date(now).toISOString(),
          })
          if (entry.drift) setDrift(doc.users.get(entry.user)!, entry.drift)
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
      algorithm: e.algorithm ?? 'SHA1',
      ...(e.serial === undefined ? {} : {serial: e.serial}),
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
    if (!f.from || target === undefined) throw usageError('say what to import: USERNAME --secret-stdin, or --from google-authenticator|users.oath|pskc FILE')
    if (f.from !== 'pskc' && (f.assign ?? f['pskc-key-file'] ?? f['pskc-password']) !== undefined)
      throw usageError('--assign, --pskc-key-file and --pskc-password go with --from pskc')
    if (f.from === 'pskc') return this.readPskc(target)
    const text = readSource(target)
    if (f.from === 'users.oath') return parseUsersOath(text, target)
    if (f.user === undefined) throw usageError('--from google-authenticator needs --user: the user the file belongs to')
    this.auditUser = f.user
    return [parseGoogleAuthenticator(text, target, f.user)]
  }

  /** A PSKC file and its assignments, all checked (every MAC, every assigned token) before anything is written. */
  private async readPskc(file: string): Promise<Imported[]> {
    const f = this.flags
    if (f.assign === undefined) throw usageError('--from pskc needs --assign FILE: serial,user lines saying whose each token is (- = stdin)')
    if (f['pskc-password'] !== undefined && f['pskc-password'] !== '-')
      throw usageError('--pskc-password takes - and reads the password from stdin (a password on the command line shows in /proc)')
    if (f['pskc-password'] !== undefined && f['pskc-key-file'] !== undefined) throw usageError('give --pskc-key-file or --pskc-password, not both')
    if (f['pskc-password'] === '-' && f.assign === '-') throw usageError('--assign - and --pskc-password - cannot both read stdin: give --assign a file')
    const text = readSource(file)
    const assignments = parseAssignments(f.assign === '-' ? await readStdin() : readSource(f.assign), f.assign === '-' ? 'stdin' : f.assign)
    const keyFile = f['pskc-key-file']
    let key: Buffer | undefined
    if (keyFile !== undefined) {
      try {
        key = pskcKey(readFileSync(keyFile), keyFile)
      } catch (error) {
        if (error instanceof TfaError) throw error
        throw usageError(`cannot read ${keyFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
      }
    }
    const password = f['pskc-password'] === '-' ? readPasswordLine(await readStdin()) : undefined
    const tokens = readPskc(text, file, {key, password})
    return assignTokens(tokens, assignments, f.assign === '-' ? 'stdin' : f.assign, file).map(({user, token}) => ({
      user,
      secret: base32Encode(token.secret),
      interval: token.interval,
      digits: token.digits,
      algorithm: token.algorithm,
      serial: token.serial,
      drift: token.drift,
      scratchCodes: [],
    }))
  }
}

/** The first line of stdin, as a password. */
function readPasswordLine(text: string): string {
  const line = text.split('\n')[0].replace(/\r$/, '')
  if (line === '') throw usageError('--pskc-password -: stdin held no password (give it as the first line)')
  return line
}

function readSource(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (error) {
    throw usageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
}
