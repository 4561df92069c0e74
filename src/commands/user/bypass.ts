import {Flags} from '@oclif/core'
import {requiredUsernameArg} from '../../args.js'
import {BaseCommand} from '../../base-command.js'
import {hashCodesAsync, oneTimeCode} from '../../core/codes.js'
import {getOrCreate} from '../../core/users.js'

/** `user:bypass --json`: the code, shown once. */
export interface BypassResult {
  user: string
  code: string
  expiresAt: string
}

export default class Bypass extends BaseCommand<typeof Bypass> {
  static override description = `print a one-time code that lets a locked-out user in once (root only)

The code is accepted by login:check for that user once, before it expires, even while the user is
locked out (it clears the lockout). Give it to the user by a trusted channel. Only its hash is stored.`
  static override examples = ['sudo <%= config.bin %> user:bypass alice', 'sudo <%= config.bin %> user:bypass alice --ttl 300 --json']
  static override args = {username: requiredUsernameArg('user to let in')}
  static override flags = {
    ttl: Flags.integer({description: 'seconds the code stays valid (1-86400)', min: 1, max: 86_400, default: 900}),
  }

  async run(): Promise<BypassResult> {
    const user = this.targetUser(this.args.username)
    this.requireRoot('user:bypass')
    const code = oneTimeCode(3)
    const expiresAt = new Date(Date.now() + this.flags.ttl * 1000).toISOString()
    const hashing = hashCodesAsync([code]) // on a libuv thread, while the store is read
    hashing.catch(() => {}) // a failure is reported where it is awaited, not as unhandled
    await this.store.updateUser(user, async (doc) => {
      const {salt, hashes} = await hashing
      getOrCreate(doc, user).bypass = {salt, hash: hashes[0], expiresAt}
    })
    this.say(`one-time bypass code for ${user}: ${code}`)
    this.say(`valid once, until ${expiresAt}`)
    return {user, code, expiresAt}
  }
}
