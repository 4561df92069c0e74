import {Flags} from '@oclif/core'
import {usernameArg} from '../../../args.js'
import {BaseCommand} from '../../../base-command.js'
import {hashCodesAsync, oneTimeCode} from '../../../core/codes.js'
import {usageError} from '../../../core/errors.js'

/** `user:recovery:generate --json`: the codes, shown once. */
export interface GenerateResult {
  user: string
  codes: string[]
}

export default class Generate extends BaseCommand<typeof Generate> {
  static override description = `make one-time recovery codes for a user (replaces earlier ones)

Each code logs the user in once in place of an app code. They are printed now and never again:
only salted hashes are kept. Renewing or removing the secret voids them.`
  static override examples = ['<%= config.bin %> user:recovery:generate', 'sudo <%= config.bin %> user:recovery:generate alice --count 5 --json']
  static override args = {username: usernameArg()}
  static override flags = {
    count: Flags.integer({description: 'how many codes (1-20)', min: 1, max: 20, default: 10}),
    code: Flags.string({description: 'a current code or recovery code, to make your own codes under sudo (- reads it from stdin)'}),
  }

  async run(): Promise<GenerateResult> {
    const user = this.targetUser(this.args.username)
    const codes = Array.from({length: this.flags.count}, () => oneTimeCode(2))
    // hashed on libuv's threads (every core) while the store is read; a refusal only wastes them
    const hashing = hashCodesAsync(codes)
    hashing.catch(() => {}) // a failure is reported where it is awaited, not as unhandled
    const proof = await this.selfServiceCode(user, this.flags.code)
    const outcome = await this.selfServiceUpdate(
      (doc) => (doc.users.get(user)?.secret ? [user] : []),
      proof,
      async (doc) => {
        const record = doc.users.get(user)
        if (!record?.secret) return {missing: true}
        record.recovery = await hashing
        return {missing: false}
      },
      user,
    )
    if (outcome.missing) throw usageError(`${user} has no 2FA secret: recovery codes go with a secret (user:secret:renew ${user})`)
    this.say(`recovery codes for ${user} (each works once; store them somewhere safe, they are not shown again):`)
    for (const c of codes) this.say(`  ${c}`)
    return {user, codes}
  }
}
