import {isAbsolute} from 'node:path'
import {secretKey} from './codes.js'
import {EXIT, TfaError, usageError} from './errors.js'
import type {Digits, Doc, Interval, UserRecord} from './model.js'
import {hotp, hotpOf, timeStep} from './totp.js'
import {quote} from './validate.js'
import {findAuthLine, type PamLine} from './pam.js'

/**
 * The pam_oath users file (liboath "UsersFile"), as Debian 12's libpam-oath 2.6.7 reads and
 * rewrites it. One line per user: `TYPE USER PASSWD HEXSECRET [COUNTER] [LASTOTP] [TIME]`,
 * fields split on runs of spaces/tabs. After each successful login pam_oath rewrites the
 * user's line with the accepted code as LASTOTP and the local time as TIME; it refuses that
 * code again, and any code of an earlier step while LASTOTP is still inside its window.
 *
 * tfactl owns the file: it rewrites it wholly from the store, carrying pam_oath's trailing
 * fields over for users whose type and secret are unchanged. Pure functions only; the disk
 * side is src/store/oathfile/.
 */

export const DEFAULT_OATH_FILE = '/etc/users.oath'
/** liboath decodes the secret into `char secret[32]`: longer keys fail every login. */
export const PAM_OATH_MAX_SECRET_BYTES = 32
/** pam_oath's own default for `window=` when the PAM line does not set it. */
export const PAM_OATH_DEFAULT_WINDOW = 5

export const OATH_HEADER = '# pam_oath users file, written by tfactl from its store (tfactl ssh:sync). pam_oath records each login here; do not edit by hand.'

/** The first-field values liboath's parse_type accepts; other lines are skipped by pam_oath. */
const OATH_TYPE = /^(?:HOTP(?:\/E(?:\/[678])?)?|HOTP\/T(?:30|60)(?:\/[678])?)$/
const OATH_TIME = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)L$/

/** One line pam_oath would consider: its type parses. Missing trailing fields are undefined. */
export interface OathEntry {
  /** 1-based line number in the file. */
  line: number
  type: string
  user: string
  passwd?: string
  secret?: string
  counter?: string
  lastOtp?: string
  time?: string
}

/** One line as pam_oath reads it, or undefined when its first field is not a type (pam_oath skips it). */
export function parseOathLine(raw: string, line: number): OathEntry | undefined {
  const [type, user, passwd, secret, counter, lastOtp, time] = raw.split(/[ \t\r]+/).filter((f) => f !== '')
  if (!type || !OATH_TYPE.test(type) || !user) return undefined
  return {line, type, user, passwd, secret, counter, lastOtp, time}
}

/** Reads a users file the way pam_oath does: lines whose first field is not a type are ignored. */
/**
 * The first line that is neither blank, a `#` comment nor a users-file entry (1-based), or 0
 * when the text is a pam_oath users file (or empty). Tells a users file from any other file
 * (a PAM config, /etc/passwd, a key) before tfactl takes it over.
 */
export function foreignLine(text: string): number {
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim()
    if (line === '' || line.startsWith('#')) continue
    const [type, user] = line.split(/[ \t\r]+/)
    if (!OATH_TYPE.test(type) || !user) return i + 1
  }
  return 0
}

export function parseUsersFile(text: string): OathEntry[] {
  const entries: OathEntry[] = []
  text.split('\n').forEach((raw, index) => {
    const entry = parseOathLine(raw, index + 1)
    if (entry) entries.push(entry)
  })
  return entries
}

/** Entries grouped by user, in file order: every pairing of users with lines goes through this (never a scan per user). */
export function entriesByUser(entries: OathEntry[]): Map<string, OathEntry[]> {
  const byUser = new Map<string, OathEntry[]>()
  for (const e of entries) {
    const mine = byUser.get(e.user)
    if (mine) mine.push(e)
    else byUser.set(e.user, [e])
  }
  return byUser
}

/** The TOTP step length a type names (undefined for event-based HOTP). */
export function typeInterval(type: string): number | undefined {
  const m = /^HOTP\/T(30|60)/.exec(type)
  return m ? Number(m[1]) : undefined
}

export const oathType = (interval: Interval, digits: Digits): string => `HOTP/T${interval}/${digits}`

/** A user as the users file must show them. */
export interface OathUser {
  user: string
  type: string
  /** Lower-case hex of the raw key. */
  hex: string
  key: Buffer
  interval: Interval
  digits: Digits
  lastUsedStep: number | null
}

/**
 * Who must be in the users file: every user with a secret, but only while 2FA and SSH 2FA are
 * both on. Fails closed: a user whose settings pam_oath cannot check is an error, never left
 * out (pam_oath would treat a missing user as one without 2FA and let the password alone in).
 */
export function oathUsers(doc: Doc): OathUser[] {
  if (!doc.settings.enabled || !doc.settings.ssh) return []
  const users: OathUser[] = []
  const problems: string[] = []
  for (const [user, r] of doc.users) {
    const u = oathUser(user, r)
    if (typeof u === 'string') problems.push(u)
    else if (u) users.push(u)
  }
  if (problems.length > 0) throw oathUnsupported(problems)
  return users.sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0))
}

/** One user as the users file must show them: undefined without a secret, a string saying why pam_oath cannot check them. */
export function oathUser(user: string, r: UserRecord | undefined): OathUser | string | undefined {
  if (!r?.secret) return undefined
  const key = secretKey(r.secret)
  if (!key) return `${user}'s secret is not valid base32`
  if (r.algorithm !== 'SHA1') return `${user} uses ${r.algorithm} codes (pam_oath checks HMAC-SHA1 only)`
  if (key.length > PAM_OATH_MAX_SECRET_BYTES) return `${user}'s secret has ${key.length} bytes (pam_oath takes at most ${PAM_OATH_MAX_SECRET_BYTES})`
  return {user, type: oathType(r.interval, r.digits), hex: key.toString('hex'), key, interval: r.interval, digits: r.digits, lastUsedStep: r.lastUsedStep}
}

export const oathUnsupported = (problems: string[]): TfaError =>
  new TfaError(
    `SSH 2FA cannot be expressed in the pam_oath users file, so nothing was changed: ${problems.join('; ')}. ` +
      'Give these users a new secret (user:secret:renew) or turn SSH 2FA off (twofactor:enable --no-ssh)',
    EXIT.usage,
    'oath_unsupported',
  )

const pad = (n: number, width = 2) => String(n).padStart(width, '0')

/** pam_oath's TIME field: `%Y-%m-%dT%H:%M:%SL`, local time, a literal L. */
export function formatOathTime(ms: number): string {
  const d = new Date(ms)
  return `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}L`
}

/**
 * A TIME field read both as local time (how pam_oath wrote it, in sshd's time zone) and as UTC
 * (in case tfactl runs with another TZ). Undefined when it is not in pam_oath's format.
 */
export function parseOathTime(text: string | undefined): {local: number; utc: number} | undefined {
  const m = text === undefined ? null : OATH_TIME.exec(text)
  if (!m) return undefined
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number)
  const local = new Date(y, mo - 1, d, h, mi, s).getTime()
  const utc = Date.UTC(y, mo - 1, d, h, mi, s)
  return Number.isNaN(local) || Number.isNaN(utc) ? undefined : {local, utc}
}

/**
 * The time step whose code is the LASTOTP pam_oath recorded, or undefined. The code alone does
 * not say its step, so candidates are searched around the recorded TIME (read as local time and
 * as UTC) and around now, `radius` steps each side (pam_oath accepts codes up to its window
 * away from its clock). The newest match wins: refusing a little more is the safe mistake.
 * Steps are only compared while codes could still be accepted, so losing an old step is harmless.
 */
export function recordedStep(
  key: Buffer,
  interval: number,
  lastOtp: string | undefined,
  time: string | undefined,
  now: number,
  window: number,
): number | undefined {
  if (!lastOtp || !/^\d{6,8}$/.test(lastOtp)) return undefined
  const radius = Math.max(window, PAM_OATH_DEFAULT_WINDOW) + 1
  const latest = timeStep(now, interval) + radius
  const centres = [timeStep(now, interval)]
  const t = parseOathTime(time)
  if (t) centres.push(timeStep(t.local, interval), timeStep(t.utc, interval))
  const seen = new Set<number>()
  const code = hotpOf(key, lastOtp.length)
  let found: number | undefined
  for (const centre of centres)
    for (let step = centre - radius; step <= Math.min(centre + radius, latest); step++) {
      if (seen.has(step) || step < 0) continue
      seen.add(step)
      if ((found === undefined || step > found) && code(step) === lastOtp) found = step
    }
  return found
}

/** The user's entries whose type and secret are the ones the store holds (same key, same step length). */
const sameSecret = (u: Pick<OathUser, 'hex' | 'interval'>, e: OathEntry): boolean => e.secret?.toLowerCase() === u.hex && typeInterval(e.type) === u.interval

/**
 * Copies the replay state pam_oath recorded into the store: for each user whose line holds
 * the store's own secret, a LASTOTP newer than the store's last accepted step becomes that step.
 * Returns the users whose record changed. Run before every decision and before lines are
 * dropped, so that turning SSH 2FA off and on again keeps codes used over SSH refused.
 */
export function importReplay(doc: Doc, entries: OathEntry[] | Map<string, OathEntry[]>, now: number): string[] {
  const byUser = Array.isArray(entries) ? entriesByUser(entries) : entries
  const changed: string[] = []
  // Only users who have a line can change: pair through the smaller side (lines, by key).
  for (const [user, mine] of byUser) {
    const r = doc.users.get(user)
    if (r && importUserReplay(r, mine, now, doc.settings.window)) changed.push(user)
  }
  return changed
}

/** importReplay for one user and their own lines; returns whether the record changed. */
export function importUserReplay(r: UserRecord, mine: OathEntry[] | undefined, now: number, window: number): boolean {
  const key = mine && r.secret && r.algorithm === 'SHA1' ? secretKey(r.secret) : undefined
  if (!key) return false
  const u = {hex: key.toString('hex'), interval: r.interval}
  let changed = false
  for (const e of mine!) {
    if (!e.lastOtp || !sameSecret(u, e)) continue
    if (r.lastUsedStep !== null && e.lastOtp === hotp(key, r.lastUsedStep, e.lastOtp.length)) continue // already known
    const step = recordedStep(key, r.interval, e.lastOtp, e.time, now, window)
    if (step === undefined || (r.lastUsedStep !== null && step <= r.lastUsedStep)) continue
    r.lastUsedStep = step
    const at = parseOathTime(e.time)?.local
    r.lastUsedAt = new Date(at !== undefined && at <= now ? at : now).toISOString()
    changed = true
  }
  return changed
}

/**
 * pam_oath's trailing fields for one user: carried over from the file while they are at least
 * as new as the store's last accepted step, else made from that step (so a code accepted by
 * login:check, or before SSH 2FA was turned off, is refused by sshd too).
 */
function trailingFields(u: OathUser, mine: OathEntry[] | undefined, now: number, window: number): string[] {
  const old = mine?.find((e) => e.type === u.type && e.passwd === '-' && sameSecret(u, e))
  const counter = old?.counter && /^\d{1,19}$/.test(old.counter) ? old.counter : '0'
  const oldOtp = old?.lastOtp && /^\d{6,8}$/.test(old.lastOtp) ? old.lastOtp : undefined
  if (oldOtp) {
    const known = u.lastUsedStep !== null && oldOtp === hotp(u.key, u.lastUsedStep, oldOtp.length)
    const step = known ? u.lastUsedStep! : recordedStep(u.key, u.interval, oldOtp, old!.time, now, window)
    if (u.lastUsedStep === null || (step !== undefined && step >= u.lastUsedStep)) {
      const time = parseOathTime(old!.time) ? old!.time! : formatOathTime(step === undefined ? now : step * u.interval * 1000)
      return [counter, oldOtp, time]
    }
  }
  if (u.lastUsedStep !== null) return [counter, hotp(u.key, u.lastUsedStep, u.digits), formatOathTime(u.lastUsedStep * u.interval * 1000)]
  return old?.counter ? [counter] : []
}

/** The whole users file for `users`, keeping pam_oath's replay fields from `entries`. */
export function renderUsersFile(users: OathUser[], entries: OathEntry[] | Map<string, OathEntry[]>, now: number, window: number): string {
  const byUser = Array.isArray(entries) ? entriesByUser(entries) : entries
  return [OATH_HEADER, ...users.map((u) => oathLine(u, byUser.get(u.user), now, window)), ''].join('\n')
}

/** One user's line, keeping pam_oath's replay fields from the user's own old lines. */
export const oathLine = (u: OathUser, mine: OathEntry[] | undefined, now: number, window: number): string =>
  [u.type, u.user, '-', u.hex, ...trailingFields(u, mine, now, window)].join('\t')

export interface Freshness {
  fresh: boolean
  exists: boolean
  /** Users with a secret the file lacks. */
  missing: string[]
  /** Users in the file who should not be there. */
  extra: string[]
  /** Users whose line has another type, password field or secret, or who have several lines. */
  different: string[]
}

/** Whether the file's users, types and secrets are the store's (pam_oath's trailing fields aside). */
export function compareUsersFile(users: OathUser[], entries: OathEntry[] | undefined): Freshness {
  const exists = entries !== undefined
  const byUser = entriesByUser(entries ?? [])
  const wanted = new Set(users.map((u) => u.user))
  const missing: string[] = []
  const different: string[] = []
  for (const u of users) {
    const mine = byUser.get(u.user)
    if (!mine) missing.push(u.user)
    else if (mine.length > 1 || mine[0].type !== u.type || mine[0].passwd !== '-' || !sameSecret(u, mine[0])) different.push(u.user)
  }
  const extra = [...byUser.keys()].filter((user) => !wanted.has(user))
  return {fresh: exists && missing.length === 0 && extra.length === 0 && different.length === 0, exists, missing, extra, different}
}

/** The users file path must be one PAM can pass (no spaces) and pam_oath will not expand. */
export function checkOathPath(path: string): string {
  if (!isAbsolute(path)) throw usageError(`--oath-file must be an absolute path, got ${quote(path)}`)
  if (/[\s\p{C}$[\]]/u.test(path)) throw usageError(`--oath-file ${quote(path)}: spaces, control characters, "$" and brackets cannot go into a PAM line`)
  if (path.endsWith('/')) throw usageError(`--oath-file ${quote(path)} names a directory`)
  // PAM reads everything after a # on a line as a comment: pam_oath would get a cut path.
  if (path.includes('#')) throw usageError(`--oath-file ${quote(path)}: "#" starts a comment in a PAM line, so pam_oath would read another file`)
  return path
}

export const PAM_OATH_CONTROL = '[success=ok user_unknown=ignore default=die]'

/** The auth line for /etc/pam.d/sshd, after the password module. */
export const pamOathLine = (usersFile: string, window: number): string => `auth ${PAM_OATH_CONTROL} pam_oath.so usersfile=${usersFile} window=${window}`

export const SSHD_SETTINGS = ['UsePAM yes', 'KbdInteractiveAuthentication yes'] as const

/** What a PAM file says about pam_oath: the first active `auth … pam_oath.so` line, if any. */
export function findPamOath(pamText: string): (PamLine & {usersFile?: string; window?: number}) | undefined {
  const found = findAuthLine(pamText, 'pam_oath')
  if (!found) return undefined
  const window = found.arg('window')
  return {...found, usersFile: found.arg('usersfile'), window: window === undefined ? undefined : Number(window)}
}
