import {Flags} from '@oclif/core'
import {dirname} from 'node:path'
import {BaseCommand} from '../../base-command.js'
import {DEFAULT_OATH_FILE, pamOathLine, SSHD_SETTINGS} from '../../core/oath.js'
import type {Doc} from '../../core/model.js'
import {loadClients, matchClient} from '../../radius/clients.js'
import {atomicWrite, checkStoreDir, ensureDir} from '../../os/files.js'
import {DEFAULT_RADIUS_CONF, DEFAULT_RADIUS_SERVER, installedPamRadius, pamRadiusLine, radiusTimeout, serverLine} from '../../radius/pam.js'

export default class Config extends BaseCommand<typeof Config> {
  static override description = `print the lines that make sshd ask for codes through pam_oath

The PAM line goes into /etc/pam.d/sshd right after the password module (on Debian/Ubuntu: after
"@include common-auth"); the settings go into /etc/ssh/sshd_config. The window is the store's.
With --radius: the pam_radius_auth line, its server file and the same sshd settings, for a
tfactl radius:serve responder (challenge mode) on this host or a central one. Where the installed
pam_radius_auth is 3.0 or later, the PAM line requires signed answers (require_message_authenticator)
and the responder's line for this host should say require-ma. The shared secret read from --clients
is never printed unless --show-secret says so: --write writes the server file itself (mode 600,
never through a link), secret included.`
  static override audited = false
  static override examples = [
    '<%= config.bin %> ssh:config',
    '<%= config.bin %> ssh:config --json',
    'sudo <%= config.bin %> ssh:config --radius --clients /etc/tfactl/radius-clients --write',
    '<%= config.bin %> ssh:config --radius --radius-server 10.0.0.5:1812 --radius-server 10.0.0.6:1812',
  ]
  static override flags = {
    radius: Flags.boolean({description: 'print the pam_radius_auth setup instead (asks a tfactl radius:serve responder)'}),
    'radius-server': Flags.string({description: 'responder for the pam_radius server file, HOST:PORT (repeatable: tried in order)', multiple: true}),
    'radius-conf': Flags.string({description: 'where the pam_radius server file goes', default: DEFAULT_RADIUS_CONF}),
    clients: Flags.string({description: "the responder's clients file: the shared secret of 127.0.0.1 goes into the server file"}),
    write: Flags.boolean({description: 'write the server file (--radius-conf) with the secret from --clients, mode 600', dependsOn: ['clients']}),
    'show-secret': Flags.boolean({description: 'print the shared secret from --clients in the server lines (and the JSON)', dependsOn: ['clients']}),
  }

  async run() {
    const doc = await this.store.read()
    if (this.flags.radius) return this.radius(doc)
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

  /** SSH 2FA through pam_radius_auth and a tfactl radius:serve responder (challenge mode). */
  private radius(doc: Doc) {
    const s = doc.settings
    const conf = this.flags['radius-conf']
    const servers = this.flags['radius-server'] ?? [DEFAULT_RADIUS_SERVER]
    let secret = 'SHARED-SECRET'
    // pam_radius_auth 3.0 signs its requests and can refuse unsigned answers; 2.0 does neither.
    const requireMa = installedPamRadius()?.requireMa ?? false
    if (this.flags.clients) {
      const client = matchClient(loadClients(this.flags.clients), '127.0.0.1')
      if (!client) this.warning(`${this.flags.clients} lists no client for 127.0.0.1: add "127.0.0.1 SECRET challenge"`)
      else {
        secret = client.secret.toString('utf8')
        if (client.mode !== 'challenge')
          this.warning(`${this.flags.clients}:${client.line}: pam_radius_auth skip_passwd needs the challenge mode: end the line with "challenge"`)
        if (requireMa && !client.requireMa)
          this.warning(`${this.flags.clients}:${client.line}: this pam_radius_auth signs its requests: add "require-ma" so that unsigned ones are dropped`)
        if (!requireMa && client.requireMa)
          this.warning(
            `${this.flags.clients}:${client.line}: this pam_radius_auth (before 3.0) sends no Message-Authenticator: "require-ma" drops every request`,
          )
      }
    } else
      this.warning(
        `no --clients: replace SHARED-SECRET with the secret of this host's line in the responder's clients file${requireMa ? ', and end that line with "require-ma"' : ''}`,
      )
    if (!s.enabled || !s.ssh) this.warning('SSH 2FA is off in the store: the responder accepts every login until twofactor:enable --ssh')
    const pamLine = pamRadiusLine(conf, requireMa)
    const timeout = radiusTimeout(s.failDelay)
    const serverLines = servers.map((server) => serverLine(server, secret, timeout))
    const shown = this.flags.clients && !this.flags['show-secret'] ? servers.map((server) => serverLine(server, 'SHARED-SECRET', timeout)) : serverLines
    if (this.flags.write) writeServerFile(conf, serverLines)
    this.say('# /etc/pam.d/sshd: add right after the password module (Debian/Ubuntu: after "@include common-auth")')
    this.say(pamLine)
    this.say('')
    if (this.flags.write) this.say(`# ${conf}: written (mode 600), server[:port] secret timeout:`)
    else this.say(`# ${conf}: root's, mode 600 (install -m 600 /dev/null ${conf}); server[:port] secret timeout`)
    if (shown !== serverLines)
      this.say(`# SHARED-SECRET: the secret of 127.0.0.1 in ${this.flags.clients} (--write puts it in the file, --show-secret prints it)`)
    for (const line of shown) this.say(line)
    this.say('')
    this.say('# /etc/ssh/sshd_config (or a file in /etc/ssh/sshd_config.d/), then reload sshd')
    for (const line of SSHD_SETTINGS) this.say(line)
    return {
      radius: true,
      requireMa,
      pam: {file: '/etc/pam.d/sshd', after: '@include common-auth', line: pamLine},
      serverFile: {file: conf, mode: '600', lines: shown, written: this.flags.write === true},
      sshd: {file: '/etc/ssh/sshd_config', lines: [...SSHD_SETTINGS]},
    }
  }
}

/** The server file, root's (or the caller's), mode 600, in a directory only its owner can change; replaced, never written through a link. */
function writeServerFile(path: string, lines: string[]): void {
  checkStoreDir(dirname(path), "the server file's directory")
  ensureDir(dirname(path))
  atomicWrite(path, lines.map((line) => `${line}\n`).join(''))
}
