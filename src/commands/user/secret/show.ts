import {Flags} from '@oclif/core'
import {usernameArg} from '../../../args.js'
import {hostname} from 'node:os'
import {BaseCommand} from '../../../base-command.js'
import {type EnrolmentView, enrolmentView} from '../../../core/enrol.js'
import {usageError} from '../../../core/errors.js'
import {enrolmentOf} from '../../../core/users.js'
import {type QrChoice, renderEnrolment} from '../../../ui/enrolment.js'

/** `user:secret:show --json`. */
export type ShowResult = EnrolmentView

export default class Show extends BaseCommand<typeof Show> {
  static override description = "show a user's existing secret again as a QR code, key and URI"
  static override audited = false
  static override examples = ['<%= config.bin %> user:secret:show', 'sudo <%= config.bin %> user:secret:show alice --qr small']
  static override args = {username: usernameArg()}
  static override flags = {
    qr: Flags.string({description: 'how to draw the QR code', options: ['terminal', 'small', 'none'], default: 'terminal'}),
  }

  async run(): Promise<ShowResult> {
    const user = this.targetUser(this.args.username)
    const doc = await this.store.read()
    const record = doc.users.get(user)
    const enrolment = record && enrolmentOf(record)
    if (!enrolment) throw usageError(`${user} has no 2FA secret: create one with user:secret:renew ${user}`)
    const view = enrolmentView(user, enrolment, doc.settings.issuer, hostname())
    this.say(await renderEnrolment(view, this.flags.qr as QrChoice))
    return view
  }
}
