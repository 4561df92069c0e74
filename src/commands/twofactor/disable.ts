import {BaseCommand} from '../../base-command.js'
import {disableSettings} from '../../core/settings.js'

export default class Disable extends BaseCommand<typeof Disable> {
  static override description = 'emergency bypass: turn 2FA off for everyone, keeping every secret (re-enabling restores them)'
  static override examples = ['<%= config.bin %> twofactor:disable', 'sudo <%= config.bin %> twofactor:disable --json']

  async run() {
    const changed = await this.store.update((doc) => {
      const was = doc.settings.enabled
      doc.settings = disableSettings(doc.settings)
      return was
    })
    this.say(changed ? '2FA disabled: logins need the password only; secrets are kept' : '2FA was already off')
    return {enabled: false, changed}
  }
}
