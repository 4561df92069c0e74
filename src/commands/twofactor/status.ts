import {BaseCommand} from '../../base-command.js'
import {configuredCount} from '../../core/users.js'
import {publicSettings, settingsLines} from '../../ui/output.js'

export default class Status extends BaseCommand<typeof Status> {
  static override description = 'show the global 2FA settings and how many users have a secret'
  static override audited = false
  static override examples = ['<%= config.bin %> twofactor:status', '<%= config.bin %> twofactor:status --json']

  async run() {
    const doc = await this.store.read()
    const users = {total: doc.users.size, configured: configuredCount(doc)}
    for (const line of settingsLines(doc.settings)) this.say(line)
    this.say(`users:        ${users.configured} with a secret (${users.total} known)`)
    return {...publicSettings(doc.settings), users}
  }
}
