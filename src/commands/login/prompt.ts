import {Flags} from '@oclif/core'
import {BaseCommand} from '../../base-command.js'
import {loginSession, markPrompted} from '../../store/session.js'

/** `login:prompt --json`. */
export interface PromptResult {
  /** Whether the invitation to set up 2FA was shown. */
  prompted: boolean
}

export default class Prompt extends BaseCommand<typeof Prompt> {
  static override description = `for /etc/profile.d: once per login session, invite a user without a secret to set one up

Does nothing (silently, exit 0) unless stdin and stdout are terminals, global 2FA is on and the
user has no secret. Never blocks a login: every error is swallowed with exit 0.`
  static override examples = ['<%= config.bin %> login:prompt', 'sudo -n <%= config.bin %> login:prompt --session "$XDG_SESSION_ID"']
  static override audited = false
  static override flags = {
    session: Flags.string({description: "login session id [default: $XDG_SESSION_ID, else the shell's kernel session id]"}),
  }

  async run(): Promise<PromptResult> {
    if (!this.interactive()) return {prompted: false}
    const user = this.targetUser(undefined)
    const doc = await this.store.read()
    if (!doc.settings.enabled || doc.users.get(user)?.secret) return {prompted: false}
    if (!markPrompted(user, this.flags.session ? `arg-${this.flags.session}` : loginSession())) return {prompted: false}

    const {confirm} = await import('@inquirer/prompts')
    this.say(`Two-factor authentication is on, and ${user} has no second factor yet.`)
    if (await confirm({message: 'Set up an authenticator app now?', default: true})) {
      const key = this.flags['key-file']
      await this.config.runCommand('user:secret:renew', [user, '--store', this.store.spec, ...(key ? ['--key-file', key] : [])])
    } else {
      this.say('Skipped. Set it up any time with: tfactl user:secret:renew')
    }
    process.exitCode = 0
    return {prompted: true}
  }

  /** A login must never fail because of this command. */
  public override async catch(): Promise<void> {
    process.exitCode = 0
  }
}
