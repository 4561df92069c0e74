import {BaseCommand} from '../../base-command.js'
import {summaryOf} from '../../core/model.js'
import {statusLines, statusResult} from '../../ui/output.js'

export default class Status extends BaseCommand<typeof Status> {
  static override description = 'show the global 2FA settings and how many users have a secret'
  static override audited = false
  static override examples = ['<%= config.bin %> twofactor:status', '<%= config.bin %> twofactor:status --json']

  async run() {
    // settings and counts only: no record is decoded (store:check validates the whole store).
    // Plain calls are answered by src/login/fast.ts (fastStatus) without oclif, with the same output.
    const summary = this.store.summary ? await this.store.summary() : summaryOf(await this.store.read())
    for (const line of statusLines(summary)) this.say(line)
    return statusResult(summary)
  }
}
