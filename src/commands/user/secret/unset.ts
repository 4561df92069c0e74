import {Flags} from '@oclif/core'
import {usernameArg} from '../../../args.js'
import {BaseCommand} from '../../../base-command.js'
import {removeSecret} from '../../../core/users.js'

/** `user:secret:unset --json`. */
export interface UnsetResult {
  user: string
  changed: boolean
}

export default class Unset extends BaseCommand<typeof Unset> {
  static override description = "remove a user's 2FA secret (they log in with the password alone; recovery codes are voided)"
  static override examples = ['<%= config.bin %> user:secret:unset alice --yes', 'sudo <%= config.bin %> user:secret:unset --code 123456 --yes']
  static override args = {username: usernameArg()}
  static override flags = {
    yes: Flags.boolean({description: 'do not ask for confirmation'}),
    code: Flags.string({description: 'a current code or recovery code, to remove your own secret under sudo (- reads it from stdin)'}),
  }

  async run(): Promise<UnsetResult> {
    const user = this.targetUser(this.args.username)
    await this.confirm(`remove ${user}'s 2FA secret?`, this.flags.yes)
    const proof = await this.selfServiceCode(user, this.flags.code)
    const changed = await this.selfServiceUpdate(
      () => [user],
      proof,
      (doc) => removeSecret(doc, user),
      user,
    )
    this.say(changed ? `${user}: 2FA secret removed` : `${user}: had no 2FA secret`)
    return {user, changed}
  }
}
