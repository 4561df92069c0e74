import type {Doc} from './model.js'
import {compareUsersFile, DEFAULT_OATH_FILE, findPamOath, type OathEntry, oathUsers, PAM_OATH_DEFAULT_WINDOW, pamOathLine} from './oath.js'
import {DEFAULT_RADIUS_CONF, findPamRadius, PAM_RADIUS_CONTROL, type PamLine, pamRadiusLine, parseServerFile} from './pam.js'

// `doctor` as pure checks: the command gathers the facts (files, processes, sshd -T, the store's
// own findings) and `diagnose` turns them into findings, one rule a line, table-tested
// (test/unit/doctor.test.ts) without a host to break.

export type Status = 'ok' | 'finding' | 'unknown' | 'skipped'

export interface Check {
  check: string
  status: Status
  message: string
  /** The one command that gets out of a broken state (findings only, where there is one). */
  fix?: string
}

/** A file as read: its text, or why it could not be (an errno code or a message). */
export interface FileFact {
  path: string
  text?: string
  error?: string
}

/** The pam_oath users file the store names, as found on disk. */
export interface UsersFileFact {
  path: string
  /** The file (undefined: there is none), unless it could not be read (`error`). */
  file?: {mode: number; uid: number; entries: OathEntry[]}
  error?: string
  /** What interrupted writers left beside it. */
  leftovers: {lock: boolean; pamNew: boolean; temps: string[]}
  /** The processes that have the file or its lock open (described), when the lock exists; '' for none. */
  lockHolders?: string
}

/** pam_radius_auth's server file, as found on disk. */
export interface RadiusConfFact extends FileFact {
  uid?: number
  mode?: number
}

export interface DoctorFacts {
  /** Whether the clock is NTP-synchronised; undefined: cannot tell. */
  clock: boolean | undefined
  /** The store's own findings, its state when it could be read, and whether it keeps a pam_oath users file. */
  store: {findings: Check[]; doc?: Doc; keepsUsersFile: boolean}
  /** sshd's PAM file. */
  pam: FileFact
  /** The users file the store names (read when the store keeps one and names one). */
  usersFile?: UsersFileFact
  /** The server file sshd's pam_radius_auth line names (read when there is such a line). */
  radiusConf?: RadiusConfFact
  /** Whether the installed pam_radius_auth can require signed answers (3.0: require_message_authenticator). */
  pamRadiusRequireMa?: boolean
  /** sshd's effective settings (keywords in lower case), undefined when they cannot be read. */
  sshd: {config: string; settings?: Map<string, string>}
}

/** The PAM module sshd asks for codes: pam_oath, else pam_radius_auth (RADIUS), else none. */
export function pamModule(pam: FileFact): {oath?: ReturnType<typeof findPamOath>; radius?: ReturnType<typeof findPamRadius>} {
  if (pam.text === undefined) return {}
  const oath = findPamOath(pam.text)
  return oath ? {oath} : {radius: findPamRadius(pam.text)}
}

/** Every check, in the order the report lists them. */
export function diagnose(f: DoctorFacts): Check[] {
  const checks: Check[] = [clockCheck(f.clock), ...f.store.findings]
  const doc = f.store.doc
  if (!doc) return checks
  const s = doc.settings
  const {radius} = pamModule(f.pam)
  // pam_oath with a users file, or pam_radius_auth asking radius:serve (the only way with a database store)
  const noOath = 'a database store keeps no pam_oath users file: SSH codes go through tfactl radius:serve (pam_radius_auth)'
  if (!f.store.keepsUsersFile) checks.push(skipped('users file', noOath))
  else if (radius && !s.oathFile) checks.push(skipped('users file', 'none needed: sshd asks a RADIUS responder (pam_radius_auth)'))
  else checks.push(...usersFileChecks(doc, f.usersFile))
  if (radius) checks.push(...radiusChecks(doc, f.pam.path, radius, f.radiusConf, f.pamRadiusRequireMa ?? false))
  else if (!f.store.keepsUsersFile) checks.push(skipped('sshd PAM', noOath), skipped('sshd settings', noOath))
  else checks.push(oathPamCheck(doc, f.pam))
  if (radius || f.store.keepsUsersFile) checks.push(sshdCheck(doc, f.sshd))
  return checks
}

const check = (name: string, status: Status, message: string, fix?: string): Check =>
  fix ? {check: name, status, message, fix} : {check: name, status, message}
const skipped = (name: string, message: string): Check => check(name, 'skipped', message)
const sshOff = (doc: Doc): boolean => !doc.settings.enabled || !doc.settings.ssh

export function clockCheck(synced: boolean | undefined): Check {
  if (synced === true) return check('clock', 'ok', 'NTP-synchronised')
  if (synced === false) return check('clock', 'finding', 'not NTP-synchronised: codes depend on the time (timedatectl set-ntp true)')
  return check('clock', 'unknown', 'cannot tell whether the clock is NTP-synchronised (no timedatectl or chronyc answer)')
}

export function usersFileChecks(doc: Doc, fact: UsersFileFact | undefined): Check[] {
  const s = doc.settings
  const add = (status: Status, message: string, fix?: string) => check('users file', status, message, fix)
  if (!s.oathFile || !fact) {
    if (s.enabled && s.ssh) return [add('finding', `SSH 2FA is on but no pam_oath users file is configured: run tfactl ssh:sync (writes ${DEFAULT_OATH_FILE})`)]
    return [add('skipped', 'none configured (SSH 2FA is off)')]
  }
  const path = fact.path
  let users
  try {
    users = oathUsers(doc)
  } catch (error) {
    return [add('finding', (error as Error).message)]
  }
  if (fact.error !== undefined) return [add('finding', fact.error)]
  const out: Check[] = []
  const left = fact.leftovers
  if (left.lock) {
    if (fact.lockHolders) out.push(add('finding', `${path}.lock exists, open in ${fact.lockHolders}: a login is running; if it stays, check that process`))
    else
      out.push(
        add(
          'finding',
          `${path}.lock exists and no process has it open (left by a crash): pam_oath refuses every code while it does`,
          'tfactl twofactor:disable --force',
        ),
      )
  }
  if (left.pamNew)
    out.push(add('finding', `${path}.new exists (left by an interrupted pam_oath): pam_oath fails every login until it is removed`, 'tfactl ssh:sync'))
  if (left.temps.length > 0) out.push(add('finding', `temp files of an interrupted tfactl: ${left.temps.join(', ')} (the next ssh:sync removes them)`))
  const file = fact.file
  if (!file) return [...out, add('finding', `${path} is missing: pam_oath refuses every password login; run tfactl ssh:sync`)]
  if (file.mode !== 0o600 || file.uid !== 0)
    out.push(
      add('finding', `${path} holds secrets in clear and must be root's, mode 600 (it is uid ${file.uid}, mode ${file.mode.toString(8)}): run tfactl ssh:sync`),
    )
  const f = compareUsersFile(users, file.entries)
  if (f.fresh) out.push(add('ok', `${path} matches the store (${users.length} user(s))`))
  else {
    const what = [...f.missing.map((u) => `${u} missing`), ...f.extra.map((u) => `${u} should not be listed`), ...f.different.map((u) => `${u}'s line differs`)]
    out.push(add('finding', `${path} is stale (${what.join(', ')}): run tfactl ssh:sync`))
  }
  return out
}

/**
 * sshd's PAM line, for pam_oath and pam_radius_auth alike: it must come after the password
 * module, and have none of its module's own `problems`; else the line to use, and the command
 * that prints it.
 */
export function pamLineCheck(pamFile: string, line: PamLine, problems: string[], fix: {line: string; command: string}, ok: string): Check {
  const all = [...problems]
  if (!line.afterPassword) all.push('it does not come after the password module (@include common-auth / pam_unix)')
  if (all.length === 0) return check('sshd PAM', 'ok', ok)
  return check('sshd PAM', 'finding', `${pamFile}: ${all.join('; ')}: use "${fix.line}" (${fix.command})`)
}

export function oathPamCheck(doc: Doc, pam: FileFact): Check {
  const s = doc.settings
  if (sshOff(doc)) return skipped('sshd PAM', 'SSH 2FA is off')
  const usersFile = s.oathFile ?? DEFAULT_OATH_FILE
  const wanted = pamOathLine(usersFile, s.window)
  if (pam.text === undefined) return check('sshd PAM', 'unknown', `cannot read ${pam.path}: ${pam.error}`)
  const line = findPamOath(pam.text)
  if (!line)
    return check(
      'sshd PAM',
      'finding',
      `${pam.path} does not use pam_oath, so SSH logins ask for no code: add "${wanted}" after the password module (tfactl ssh:config)`,
    )
  const problems: string[] = []
  if (line.usersFile !== usersFile) problems.push(`it reads usersfile=${line.usersFile ?? '(none)'}, tfactl writes ${s.oathFile ?? '(nothing yet)'}`)
  if ((line.window ?? PAM_OATH_DEFAULT_WINDOW) !== s.window) problems.push(`its window is ${line.window ?? '5 (pam_oath default)'}, the store's is ${s.window}`)
  return pamLineCheck(
    pam.path,
    line,
    problems,
    {line: wanted, command: 'tfactl ssh:config'},
    `${pam.path} checks codes with pam_oath against ${line.usersFile}`,
  )
}

/** SSH 2FA through RADIUS: the PAM line as ssh:config --radius prints it, and its server file. */
export function radiusChecks(
  doc: Doc,
  pamFile: string,
  line: NonNullable<ReturnType<typeof findPamRadius>>,
  conf: RadiusConfFact | undefined,
  requireMa: boolean,
): Check[] {
  if (sshOff(doc)) return [skipped('sshd PAM', 'SSH 2FA is off')]
  const problems: string[] = []
  if (!line.failsClosed) problems.push(`its control lets a login on when the responder says no or is unreachable (use ${PAM_RADIUS_CONTROL})`)
  if (!line.skipPasswd) problems.push('without skip_passwd it asks for a second password instead of sending the one given')
  if (!line.promptAttribute) problems.push('without prompt_attribute the code is echoed as it is typed')
  if (requireMa && !line.requireMa) problems.push('without require_message_authenticator it takes answers nobody signed (BlastRADIUS)')
  const pam = pamLineCheck(
    pamFile,
    line,
    problems,
    {line: pamRadiusLine(line.conf ?? DEFAULT_RADIUS_CONF, requireMa), command: 'tfactl ssh:config --radius'},
    `${pamFile} asks for codes through pam_radius_auth (${line.conf ?? '/etc/pam_radius_auth.conf'})`,
  )
  return [pam, serversCheck(doc, conf ?? {path: line.conf ?? '/etc/pam_radius_auth.conf', error: 'not read'})]
}

function serversCheck(doc: Doc, conf: RadiusConfFact): Check {
  const add = (status: Status, message: string) => check('radius servers', status, message)
  const path = conf.path
  if (conf.uid !== undefined && conf.mode !== undefined && (conf.uid !== 0 || conf.mode & 0o077))
    return add(
      'finding',
      `${path} holds the shared secret and must be root's, mode 600 (it is uid ${conf.uid}, mode ${(conf.mode & 0o777).toString(8)}): run chown root ${path} && chmod 600 ${path}`,
    )
  if (conf.text === undefined)
    return add('finding', `cannot read ${path} (${conf.error}): pam_radius_auth refuses every password login; write it with tfactl ssh:config --radius`)
  const servers = parseServerFile(conf.text)
  if (servers.length === 0) return add('finding', `${path} names no server: add "HOST:PORT SECRET TIMEOUT" (tfactl ssh:config --radius)`)
  const noSecret = servers.filter((v) => !v.hasSecret).map((v) => v.server)
  if (noSecret.length > 0) return add('finding', `${path}: no shared secret for ${noSecret.join(', ')}`)
  const waitMs = Math.min(...servers.map((v) => (v.timeout ?? 3) * 1000))
  if (waitMs <= doc.settings.failDelay)
    return add(
      'finding',
      `${path}: a timeout of ${waitMs / 1000} s is not longer than the fail delay (${doc.settings.failDelay} ms): pam_radius would give up on refusals; use the timeout tfactl ssh:config --radius prints`,
    )
  return add('ok', `${path} names ${servers.map((v) => v.server).join(', ')}`)
}

export function sshdCheck(doc: Doc, sshd: DoctorFacts['sshd']): Check {
  if (sshOff(doc)) return skipped('sshd settings', 'SSH 2FA is off')
  const settings = sshd.settings
  if (!settings) return check('sshd settings', 'unknown', `cannot read sshd's settings from ${sshd.config}`)
  const wrong = (['usepam', 'kbdinteractiveauthentication'] as const).filter((k) => settings.get(k) !== 'yes')
  if (wrong.length === 0) return check('sshd settings', 'ok', 'UsePAM yes, KbdInteractiveAuthentication yes')
  if (wrong.every((k) => !settings.has(k))) return check('sshd settings', 'unknown', `${sshd.config} does not say ${wrong.join(', ')} (check Include files)`)
  return check('sshd settings', 'finding', `sshd needs UsePAM yes and KbdInteractiveAuthentication yes in ${sshd.config} (tfactl ssh:config)`)
}

/** sshd's settings from `sshd -T` or its config file: the first value of each keyword, before any Match block. */
export function parseSshdSettings(text: string): Map<string, string> {
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
