import {Flags} from '@oclif/core'
import {requiredUsernameArg} from '../../args.js'
import {BaseCommand} from '../../base-command.js'
import {EXIT, usageError} from '../../core/errors.js'
import {decideLogin, type Method, type Service} from '../../core/login.js'
import {checkLogin} from '../../login/check.js'
import {LOGIN_CHECK_FLAGS} from '../../login/flags.js'

export default class Check extends BaseCommand<typeof Check> {
  static override description = `decide whether a login passes the 2FA step (exit 0 allowed, 1 denied)

Passwords are the system's business; this applies the 2FA rules. On a terminal, a needed code
that was not given is asked for (hidden).`
  static override examples = [
    '<%= config.bin %> login:check alice --code 123456',
    '<%= config.bin %> login:check alice --service ssh --method key --json',
    '<%= config.bin %> login:check alice --code K3JQ7-MX2PA',
    'printf \'%s\\n\' "$CODE" | <%= config.bin %> login:check alice --code -',
  ]
  static override args = {username: requiredUsernameArg('user logging in')}
  static override flags = {
    service: Flags.string({...LOGIN_CHECK_FLAGS.service, options: [...LOGIN_CHECK_FLAGS.service.options]}),
    method: Flags.string({...LOGIN_CHECK_FLAGS.method, options: [...LOGIN_CHECK_FLAGS.method.options]}),
    code: Flags.string({...LOGIN_CHECK_FLAGS.code}),
  }

  async run() {
    const user = this.targetUser(this.args.username)
    const service = this.flags.service as Service
    const method = this.flags.method as Method
    if (method === 'key' && service !== 'ssh') throw usageError('--method key only exists for --service ssh')
    const code = (await this.codeFlag(this.flags.code)) ?? (await this.askCode(user, service, method))

    const {result, lines} = await checkLogin(this.store, {user, service, method, code})
    process.exitCode = result.allowed ? EXIT.ok : EXIT.denied
    this.auditOutcome = {outcome: result.allowed ? 'allowed' : 'denied', reason: result.reason}
    for (const line of lines) this.say(line)
    return result
  }

  /** On a terminal, asks (hidden) for the code when one is needed; elsewhere it must be --code. */
  private async askCode(user: string, service: Service, method: Method): Promise<string | undefined> {
    if (!this.interactive()) return undefined
    const doc = await this.store.read()
    if (decideLogin(doc.settings, doc.users.get(user), {service, method, now: Date.now()}).reason !== 'code_required') return undefined
    const {password} = await import('@inquirer/prompts')
    return password({message: `2FA code for ${user}:`, mask: '*'})
  }
}
