import {BaseCommand} from '../../base-command.js'
import {DEFAULT_OATH_FILE, pamOathLine, SSHD_SETTINGS} from '../../core/oath.js'

export default class Config extends BaseCommand<typeof Config> {
  static override description = `print the lines that make sshd ask for codes through pam_oath

The PAM line goes into /etc/pam.d/sshd right after the password module (on Debian/Ubuntu: after
"@include common-auth"); the settings go into /etc/ssh/sshd_config. The window is the store's.`
  static override audited = false
  static override examples = ['<%= config.bin %> ssh:config', '<%= config.bin %> ssh:config --json']

  async run() {
    const doc = await this.store.read()
    const s = doc.settings
    const usersFile = s.oathFile ?? DEFAULT_OATH_FILE
    const pamLine = pamOathLine(usersFile, s.window)
    if (!s.oathFile) this.warning(`no users file is configured yet: run tfactl ssh:sync (it writes ${DEFAULT_OATH_FILE}) before changing PAM`)
    if (!s.enabled || !s.ssh) this.warning('SSH 2FA is off in the store: the users file lists nobody until twofactor:enable --ssh')
    this.say('# /etc/pam.d/sshd: add right after the password module (Debian/Ubuntu: after "@include common-auth")')
    this.say(pamLine)
    this.say('')
    this.say('# /etc/ssh/sshd_config (or a file in /etc/ssh/sshd_config.d/), then reload sshd')
    for (const line of SSHD_SETTINGS) this.say(line)
    return {
      usersFile,
      configured: s.oathFile !== null,
      window: s.window,
      pam: {file: '/etc/pam.d/sshd', after: '@include common-auth', line: pamLine},
      sshd: {file: '/etc/ssh/sshd_config', lines: [...SSHD_SETTINGS]},
    }
  }
}
