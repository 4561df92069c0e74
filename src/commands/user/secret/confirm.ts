import {Flags} from '@oclif/core'
import {usernameArg} from '../../../args.js'
import {BaseCommand} from '../../../base-command.js'
import {EXIT, TfaError, usageError} from '../../../core/errors.js'
import {confirmPending} from '../../../core/selfservice.js'
import {activate} from '../../../core/users.js'
import {normalizeCode} from '../../../core/validate.js'

/** `user:secret:confirm --json`. */
export interface ConfirmResult {
  user: string
  changed: true
}

export default class Confirm extends BaseCommand<typeof Confirm> {
  static override description = 'activate a pending secret (from user:secret:renew --pending) with its first code'
  static override examples = ['<%= config.bin %> user:secret:confirm alice --code 123456']
  static override args = {username: usernameArg()}
  static override flags = {code: Flags.string({description: 'the current code from the app; - reads one line from stdin', required: true})}

  async run(): Promise<ConfirmResult> {
    const user = this.targetUser(this.args.username)
    const code = normalizeCode((await this.codeFlag(this.flags.code))!)
    const outcome = await this.store.updateUser(user, (doc) => {
      const found = confirmPending(doc, user, process.env.SUDO_USER, code, Date.now())
      if (found && 'step' in found) {
        activate(doc, user, doc.users.get(user)!.pending!)
        doc.users.get(user)!.lastUsedStep = found.step
      }
      // a refused code is counted as it commits: audited as the refusal the run ends with
      if (found && 'refused' in found) this.auditOutcome = {outcome: 'error', reason: found.refused === 'locked_out' ? 'locked_out' : 'code_invalid'}
      return found
    })
    if (!outcome) throw usageError(`${user} has no pending secret: create one with user:secret:renew ${user} --pending`)
    if ('refused' in outcome && outcome.refused === 'locked_out')
      throw new TfaError(
        `${user} is locked out after failed codes: ask root to run tfactl user:unlock ${user}; the secret stays pending`,
        EXIT.forbidden,
        'locked_out',
      )
    if ('refused' in outcome) throw new TfaError(`the code does not match ${user}'s pending secret; it stays pending`, EXIT.denied, 'code_invalid')
    this.say(`${user}: pending secret is now active`)
    return {user, changed: true}
  }
}
