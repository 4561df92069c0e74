import {BaseCommand} from '../../base-command.js'
import {publicSettings, settingsLines} from '../../ui/output.js'

export default class Status extends BaseCommand<typeof Status> {
  static override description = 'show the global 2FA settings and how many users have a secret'
  static override audited = false
  static override examples = ['<%= config.bin %> twofactor:status', '<%= config.bin %> twofactor:status --json']

  async run() {
    // settings and counts only: no record is decoded (store:check validates the whole store)
    const {settings, total, configured} = await this.store.summary()
    const users = {total, configured}
    for (const line of settingsLines(settings)) this.say(line)
    this.say(`users:        ${users.configured} with a secret (${users.total} known)`)
    return {...publicSettings(settings), users}
  }
}
