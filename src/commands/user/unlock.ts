import {requiredUsernameArg} from '../../args.js'
import {BaseCommand} from '../../base-command.js'
import {tidy} from '../../core/users.js'

/** `user:unlock --json`. */
export interface UnlockResult {
  user: string
  changed: boolean
}

export default class Unlock extends BaseCommand<typeof Unlock> {
  static override description = 'clear a lockout after too many failed codes (root only)'
  static override examples = ['sudo <%= config.bin %> user:unlock alice']
  static override args = {username: requiredUsernameArg('user to unlock')}

  async run(): Promise<UnlockResult> {
    const user = this.targetUser(this.args.username)
    this.requireRoot('user:unlock')
    const changed = await this.store.updateUser(user, (doc) => {
      const record = doc.users.get(user)
      if (!record || (record.failures === 0 && !record.lockedUntil)) return false
      record.failures = 0
      record.lockedUntil = null
      tidy(doc, user)
      return true
    })
    this.say(changed ? `${user}: unlocked, failure count reset` : `${user}: was not locked`)
    return {user, changed}
  }
}
