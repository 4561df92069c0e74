import {Flags} from '@oclif/core'
import {execFileSync} from 'node:child_process'
import {readFileSync, statSync} from 'node:fs'
import {BaseCommand} from '../base-command.js'
import {EXIT} from '../core/errors.js'
import type {Doc} from '../core/model.js'
import {compareUsersFile, DEFAULT_OATH_FILE, findPamOath, oathUsers, PAM_OATH_DEFAULT_WINDOW, pamOathLine} from '../core/oath.js'
import {DEFAULT_RADIUS_CONF, findPamRadius, installedPamRadius, PAM_RADIUS_CONTROL, pamRadiusLine, parseServerFile} from '../radius/pam.js'
import {clockSynced} from '../os/clock.js'
import {describeOpeners, openers, procName} from '../os/procs.js'
import {type Colour, paint} from '../ui/colour.js'

type Status = 'ok' | 'finding' | 'unknown' | 'skipped'
interface Check {
  check: string
  status: Status
  message: string
  /** The one command that gets out of a broken state (findings only, where there is one). */
  fix?: string
}
type Add = (check: string, status: Status, message: string, fix?: string) => void

const SIGNS: Record<Status, string> = {ok: 'ok     ', finding: 'FINDING', unknown: '?      ', skipped: '-      '}
const HUES: Record<Status, Colour | undefined> = {ok: 'green', finding: 'red', unknown: 'yellow', skipped: undefined}

export default class Doctor extends BaseCommand<typeof Doctor> {
  static override description = `check what 2FA depends on: clock, store and key permissions, the pam_oath users file, sshd's PAM and settings

Exit 0 when all is well, 1 with findings (each says what to do; a broken state comes with "fix",
the one command that gets out of it: see docs/emergency.md). Checks that cannot be made here
(no timedatectl, no sshd) are reported as unknown and do not count as findings.`
  static override audited = false
  static override examples = ['sudo <%= config.bin %> doctor', 'sudo <%= config.bin %> doctor --json']
  static override flags = {
    'pam-file': Flags.string({description: "sshd's PAM file", default: '/etc/pam.d/sshd'}),
    'sshd-config': Flags.string({description: "sshd's configuration", default: '/etc/ssh/sshd_config'}),
  }

  async run() {
    const checks: Check[] = []
    const add: Add = (check, status, message, fix) => checks.push(fix ? {check, status, message, fix} : {check, status, message})

    const synced = clockSynced()
    if (synced === true) add('clock', 'ok', 'NTP-synchronised')
    else if (synced === false) add('clock', 'finding', 'not NTP-synchronised: codes depend on the time (timedatectl set-ntp true)')
    else add('clock', 'unknown', 'cannot tell whether the clock is NTP-synchronised (no timedatectl or chronyc answer)')

    const doc = await this.checkStore(add)
    if (doc) {
      // pam_oath with a users file, or pam_radius_auth asking radius:serve (the only way with a database store)
      const radius = this.radiusPam()
      const noOath = 'a database store keeps no pam_oath users file: SSH codes go through tfactl radius:serve (pam_radius_auth)'
      if (!this.store.localOathFile) add('users file', 'skipped', noOath)
      else if (radius && !doc.settings.oathFile) add('users file', 'skipped', 'none needed: sshd asks a RADIUS responder (pam_radius_auth)')
      else this.checkUsersFile(doc, add)
      if (radius) this.checkRadiusPam(doc, radius, add)
      else if (!this.store.localOathFile) for (const check of ['sshd PAM', 'sshd settings']) add(check, 'skipped', noOath)
      else this.checkPam(doc, add)
      if (radius || this.store.localOathFile) this.checkSshd(doc, add)
    }

    const findings = checks.filter((c) => c.status === 'finding').length
    for (const c of checks)
      this.say(
        `${HUES[c.status] ? paint(HUES[c.status]!, SIGNS[c.status]) : SIGNS[c.status]}  ${c.check}: ${c.message}${c.fix ? `\n         fix: ${c.fix}` : ''}`,
      )
    this.say(findings === 0 ? paint('green', 'no findings') : paint('red', `${findings} finding(s)`))
    process.exitCode = findings === 0 ? EXIT.ok : EXIT.denied
    return {ok: findings === 0, findings, checks}
  }

  private async checkStore(add: Add): Promise<Doc | undefined> {
    const {findings, doc} = await this.store.doctor()
    for (const f of findings) add(f.check, f.status, f.message, f.fix)
    return doc
  }

  private checkUsersFile(doc: Doc, add: Add): void {
    const s = doc.settings
    const path = s.oathFile
    const usersFile = this.store.usersFile
    if (!usersFile) return add('users file', 'skipped', 'this store keeps no pam_oath users file')
    if (!path) {
      if (s.enabled && s.ssh)
        add('users file', 'finding', `SSH 2FA is on but no pam_oath users file is configured: run tfactl ssh:sync (writes ${DEFAULT_OATH_FILE})`)
      else add('users file', 'skipped', 'none configured (SSH 2FA is off)')
      return
    }
    let users
    try {
      users = oathUsers(doc)
    } catch (error) {
      add('users file', 'finding', (error as Error).message)
      return
    }
    let file
    try {
      file = usersFile.read(path)
    } catch (error) {
      add('users file', 'finding', (error as Error).message)
      return
    }
    const left = usersFile.leftovers(path)
    if (left.lock) {
      const holders = openers([procName(path), procName(`${path}.lock`)])
      if (holders.length > 0)
        add('users file', 'finding', `${path}.lock exists, open in ${describeOpeners(holders)}: a login is running; if it stays, check that process`)
      else
        add(
          'users file',
          'finding',
          `${path}.lock exists and no process has it open (left by a crash): pam_oath refuses every code while it does`,
          'tfactl twofactor:disable --force',
        )
    }
    if (left.pamNew)
      add('users file', 'finding', `${path}.new exists (left by an interrupted pam_oath): pam_oath fails every login until it is removed`, 'tfactl ssh:sync')
    if (left.temps.length > 0) add('users file', 'finding', `temp files of an interrupted tfactl: ${left.temps.join(', ')} (the next ssh:sync removes them)`)
    if (!file) {
      add('users file', 'finding', `${path} is missing: pam_oath refuses every password login; run tfactl ssh:sync`)
      return
    }
    if (file.mode !== 0o600 || file.uid !== 0)
      add(
        'users file',
        'finding',
        `${path} holds secrets in clear and must be root's, mode 600 (it is uid ${file.uid}, mode ${file.mode.toString(8)}): run tfactl ssh:sync`,
      )
    const f = compareUsersFile(users, file.entries)
    if (f.fresh) add('users file', 'ok', `${path} matches the store (${users.length} user(s))`)
    else {
      const what = [
        ...f.missing.map((u) => `${u} missing`),
        ...f.extra.map((u) => `${u} should not be listed`),
        ...f.different.map((u) => `${u}'s line differs`),
      ]
      add('users file', 'finding', `${path} is stale (${what.join(', ')}): run tfactl ssh:sync`)
    }
  }

  private checkPam(doc: Doc, add: Add): void {
    const s = doc.settings
    if (!s.enabled || !s.ssh) return add('sshd PAM', 'skipped', 'SSH 2FA is off')
    const pamFile = this.flags['pam-file']
    const wanted = pamOathLine(s.oathFile ?? DEFAULT_OATH_FILE, s.window)
    let text: string
    try {
      text = readFileSync(pamFile, 'utf8')
    } catch (error) {
      return add('sshd PAM', 'unknown', `cannot read ${pamFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
    }
    const pam = findPamOath(text)
    if (!pam)
      return add(
        'sshd PAM',
        'finding',
        `${pamFile} does not use pam_oath, so SSH logins ask for no code: add "${wanted}" after the password module (tfactl ssh:config)`,
      )
    const problems: string[] = []
    if (pam.usersFile !== (s.oathFile ?? DEFAULT_OATH_FILE))
      problems.push(`it reads usersfile=${pam.usersFile ?? '(none)'}, tfactl writes ${s.oathFile ?? '(nothing yet)'}`)
    if ((pam.window ?? PAM_OATH_DEFAULT_WINDOW) !== s.window) problems.push(`its window is ${pam.window ?? '5 (pam_oath default)'}, the store's is ${s.window}`)
    if (!pam.afterPassword) problems.push('it does not come after the password module (@include common-auth / pam_unix)')
    if (problems.length > 0) add('sshd PAM', 'finding', `${pamFile}: ${problems.join('; ')}: use "${wanted}" (tfactl ssh:config)`)
    else add('sshd PAM', 'ok', `${pamFile} checks codes with pam_oath against ${pam.usersFile}`)
  }

  /** The pam_radius_auth line of sshd's PAM file, when it uses pam_radius_auth and not pam_oath. */
  private radiusPam() {
    try {
      const text = readFileSync(this.flags['pam-file'], 'utf8')
      return findPamOath(text) ? undefined : findPamRadius(text)
    } catch {
      return undefined
    }
  }

  /** SSH 2FA through RADIUS: the PAM line as ssh:config --radius prints it, and its server file. */
  private checkRadiusPam(doc: Doc, pam: NonNullable<ReturnType<Doctor['radiusPam']>>, add: Add): void {
    const s = doc.settings
    if (!s.enabled || !s.ssh) return add('sshd PAM', 'skipped', 'SSH 2FA is off')
    const pamFile = this.flags['pam-file']
    const requireMa = installedPamRadius()?.requireMa ?? false // pam_radius_auth 3.0 or later
    const wanted = pamRadiusLine(pam.conf ?? DEFAULT_RADIUS_CONF, requireMa)
    const problems: string[] = []
    if (!pam.afterPassword) problems.push('it does not come after the password module (@include common-auth / pam_unix)')
    if (!pam.failsClosed) problems.push(`its control lets a login on when the responder says no or is unreachable (use ${PAM_RADIUS_CONTROL})`)
    if (!pam.skipPasswd) problems.push('without skip_passwd it asks for a second password instead of sending the one given')
    if (!pam.promptAttribute) problems.push('without prompt_attribute the code is echoed as it is typed')
    if (requireMa && !pam.requireMa) problems.push('without require_message_authenticator it takes answers nobody signed (BlastRADIUS)')
    if (problems.length > 0) add('sshd PAM', 'finding', `${pamFile}: ${problems.join('; ')}: use "${wanted}" (tfactl ssh:config --radius)`)
    else add('sshd PAM', 'ok', `${pamFile} asks for codes through pam_radius_auth (${pam.conf ?? '/etc/pam_radius_auth.conf'})`)

    const conf = pam.conf ?? '/etc/pam_radius_auth.conf'
    let servers
    try {
      const st = statSync(conf)
      if (st.uid !== 0 || st.mode & 0o077)
        return add(
          'radius servers',
          'finding',
          `${conf} holds the shared secret and must be root's, mode 600 (it is uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}): run chown root ${conf} && chmod 600 ${conf}`,
        )
      servers = parseServerFile(readFileSync(conf, 'utf8'))
    } catch (error) {
      return add(
        'radius servers',
        'finding',
        `cannot read ${conf} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): pam_radius_auth refuses every password login; write it with tfactl ssh:config --radius`,
      )
    }
    if (servers.length === 0) return add('radius servers', 'finding', `${conf} names no server: add "HOST:PORT SECRET TIMEOUT" (tfactl ssh:config --radius)`)
    const noSecret = servers.filter((v) => !v.hasSecret).map((v) => v.server)
    if (noSecret.length > 0) return add('radius servers', 'finding', `${conf}: no shared secret for ${noSecret.join(', ')}`)
    const waitMs = Math.min(...servers.map((v) => (v.timeout ?? 3) * 1000))
    if (waitMs <= s.failDelay)
      return add(
        'radius servers',
        'finding',
        `${conf}: a timeout of ${waitMs / 1000} s is not longer than the fail delay (${s.failDelay} ms): pam_radius would give up on refusals; use the timeout tfactl ssh:config --radius prints`,
      )
    add('radius servers', 'ok', `${conf} names ${servers.map((v) => v.server).join(', ')}`)
  }

  private checkSshd(doc: Doc, add: Add): void {
    const s = doc.settings
    if (!s.enabled || !s.ssh) return add('sshd settings', 'skipped', 'SSH 2FA is off')
    const config = this.flags['sshd-config']
    const settings = effectiveSshd(config)
    if (!settings) return add('sshd settings', 'unknown', `cannot read sshd's settings from ${config}`)
    const wrong = (['usepam', 'kbdinteractiveauthentication'] as const).filter((k) => settings.get(k) !== 'yes')
    if (wrong.length === 0) add('sshd settings', 'ok', 'UsePAM yes, KbdInteractiveAuthentication yes')
    else if (wrong.every((k) => !settings.has(k))) add('sshd settings', 'unknown', `${config} does not say ${wrong.join(', ')} (check Include files)`)
    else add('sshd settings', 'finding', `sshd needs UsePAM yes and KbdInteractiveAuthentication yes in ${config} (tfactl ssh:config)`)
  }
}

/** sshd's effective settings (`sshd -T`), else the first value of each keyword in the file. */
function effectiveSshd(config: string): Map<string, string> | undefined {
  const parse = (text: string) => {
    const map = new Map<string, string>()
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim()
      if (/^match\s/i.test(line)) break // Match blocks only apply to some connections
      const m = /^(\S+)\s+(\S+)/.exec(line)
      if (!m) continue
      const key = m[1].toLowerCase() === 'challengeresponseauthentication' ? 'kbdinteractiveauthentication' : m[1].toLowerCase()
      if (!map.has(key)) map.set(key, m[2].toLowerCase())
    }
    return map
  }
  try {
    const out = execFileSync('/usr/sbin/sshd', ['-T', '-f', config], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000})
    return parse(out)
  } catch {
    try {
      return parse(readFileSync(config, 'utf8'))
    } catch {
      return undefined
    }
  }
}
