import {randomBytes} from 'node:crypto'
import {storeError} from '../../core/errors.js'
import {DEFAULT_SETTINGS, DIGITS, type Doc, type Enrolment, type HashedCodes, INTERVALS, STORE_VERSION, type Settings, type UserRecord} from '../../core/model.js'
import {ALGORITHMS} from '../../core/totp.js'
import {checkIssuer, checkUsername} from '../../core/validate.js'
import type {KeyRing} from '../keys.js'
import {decryptSecret, encryptSecret} from '../secrets.js'


type Json = Record<string, unknown>

/** Reads and checks one value; `path` names the field in error messages. */
export class Reader {
  constructor(readonly where: string) {}
  fail(path: string, problem: string): never {
    throw storeError(`${this.where}: ${path}: ${problem}`)
  }
  object(v: unknown, path: string): Json {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, 'expected an object')
    return v as Json
  }
  bool(v: unknown, path: string): boolean {
    return typeof v === 'boolean' ? v : this.fail(path, 'expected true or false')
  }
  int(v: unknown, path: string, min: number, max: number): number {
    return Number.isInteger(v) && (v as number) >= min && (v as number) <= max ? (v as number) : this.fail(path, `expected a whole number from ${min} to ${max}`)
  }
  string(v: unknown, path: string): string {
    return typeof v === 'string' ? v : this.fail(path, 'expected a string')
  }
  nullable<T>(v: unknown, read: (v: unknown) => T): T | null {
    return v === null || v === undefined ? null : read(v)
  }
  date(v: unknown, path: string): string {
    const s = this.string(v, path)
    return Number.isNaN(Date.parse(s)) ? this.fail(path, 'expected an ISO date') : s
  }
  oneOf<T>(v: unknown, path: string, allowed: readonly T[]): T {
    return allowed.includes(v as T) ? (v as T) : this.fail(path, `expected one of ${allowed.join(', ')}`)
  }
}

function readSettings(r: Reader, v: unknown): Settings {
  const o = r.object(v, 'settings')
  const d = DEFAULT_SETTINGS
  const issuer = r.string(o.issuer ?? d.issuer, 'settings.issuer')
  try {
    checkIssuer(issuer)
  } catch {
    r.fail('settings.issuer', 'expected 1-64 printable characters without ":"')
  }
  return {
    enabled: r.bool(o.enabled ?? d.enabled, 'settings.enabled'),
    window: r.int(o.window ?? d.window, 'settings.window', 0, 10),
    ssh: r.bool(o.ssh ?? d.ssh, 'settings.ssh'),
    stig: r.bool(o.stig ?? d.stig, 'settings.stig'),
    issuer,
    maxFailures: r.int(o.maxFailures ?? d.maxFailures, 'settings.maxFailures', 0, 100),
    lockout: r.int(o.lockout ?? d.lockout, 'settings.lockout', 1, 86_400),
    failDelay: r.int(o.failDelay ?? d.failDelay, 'settings.failDelay', 0, 10_000),
    oathFile: r.nullable(o.oathFile, (x) => r.string(x, 'settings.oathFile')),
  }
}

function readCodes(r: Reader, v: unknown, path: string): HashedCodes {
  const o = r.object(v, path)
  const hashes = o.hashes
  if (!Array.isArray(hashes)) r.fail(`${path}.hashes`, 'expected a list')
  return {salt: r.string(o.salt, `${path}.salt`), hashes: hashes.map((h, i) => r.string(h, `${path}.hashes[${i}]`))}
}

function readEnrolment(r: Reader, o: Json, path: string, open: (sealed: string) => string): Omit<Enrolment, 'secret'> & {secret: string | null} {
  return {
    secret: r.nullable(o.secret, (x) => open(r.string(x, `${path}.secret`))),
    interval: r.oneOf(o.interval, `${path}.interval`, INTERVALS),
    digits: r.oneOf(o.digits, `${path}.digits`, DIGITS),
    algorithm: r.oneOf(o.algorithm, `${path}.algorithm`, ALGORITHMS),
    createdAt: r.nullable(o.createdAt, (x) => r.date(x, `${path}.createdAt`)) as string,
  }
}

function readUser(r: Reader, name: string, v: unknown, key: () => Buffer): UserRecord {
  const path = `users.${name}`
  try {
    checkUsername(name)
  } catch {
    r.fail(path, 'invalid username')
  }
  const o = r.object(v, path)
  const open = (tag: string) => (sealed: string) => {
    return decryptSecret(key(), tag, sealed, r.where)
  }
  const pending = r.nullable(o.pending, (p) => {
    const e = readEnrolment(r, r.object(p, `${path}.pending`), `${path}.pending`, open(`${name}:pending`))
    return e.secret ? (e as Enrolment) : r.fail(`${path}.pending.secret`, 'expected a secret')
  })
  return {...readEnrolment(r, o, path, open(name)), ...readHotState(r, o, path), pending}
}

/** The part of a record a login changes (see journal.ts). */
export type HotState = Pick<UserRecord, 'lastUsedStep' | 'lastUsedAt' | 'failures' | 'lockedUntil' | 'recovery' | 'bypass'>

export const hotStateOf = (u: UserRecord): HotState => ({
  lastUsedStep: u.lastUsedStep,
  lastUsedAt: u.lastUsedAt,
  failures: u.failures,
  lockedUntil: u.lockedUntil,
  recovery: u.recovery,
  bypass: u.bypass,
})

export function readHotState(r: Reader, o: Json, path: string): HotState {
  return {
    lastUsedStep: r.nullable(o.lastUsedStep, (x) => r.int(x, `${path}.lastUsedStep`, 0, Number.MAX_SAFE_INTEGER)),
    lastUsedAt: r.nullable(o.lastUsedAt, (x) => r.date(x, `${path}.lastUsedAt`)),
    failures: r.int(o.failures ?? 0, `${path}.failures`, 0, 1_000_000),
    lockedUntil: r.nullable(o.lockedUntil, (x) => r.date(x, `${path}.lockedUntil`)),
    recovery: r.nullable(o.recovery, (x) => readCodes(r, x, `${path}.recovery`)),
    bypass: r.nullable(o.bypass, (x) => {
      const b = r.object(x, `${path}.bypass`)
      return {salt: r.string(b.salt, `${path}.bypass.salt`), hash: r.string(b.hash, `${path}.bypass.hash`), expiresAt: r.date(b.expiresAt, `${path}.bypass.expiresAt`)}
    }),
  }
}

/** Parses and validates a whole store document; any problem → exit 3 naming the field. */
export interface Decoded {
  doc: Doc
  /** The key that sealed the secrets (null: none sealed). */
  keyId: string | null
  /** Which hot-state journal belongs to this file (journal.ts); null: none yet. */
  epoch: string | null
}

export function decodeStore(text: string, where: string, keys: KeyRing): Decoded {
  const r = new Reader(where)
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (error) {
    r.fail('file', `not valid JSON (${(error as Error).message})`)
  }
  const o = r.object(raw, 'document')
  const version = r.int(o.version, 'version', 1, Number.MAX_SAFE_INTEGER)
  if (version > STORE_VERSION) r.fail('version', `version ${version} was written by a newer tfactl (this one reads up to ${STORE_VERSION})`)
  const keyId = r.nullable(o.keyId, (x) => r.string(x, 'keyId'))
  const key = (): Buffer => {
    if (keyId === null) return r.fail('keyId', 'missing, but the store holds encrypted secrets')
    return keys.byId(keyId) ?? r.fail('keyId', `the key file ${keys.path ?? '(<store>.key)'} is missing or is not the key (id ${keyId}) that sealed these secrets`)
  }
  const users = new Map<string, UserRecord>()
  for (const [name, value] of Object.entries(r.object(o.users ?? {}, 'users'))) users.set(name, readUser(r, name, value, key))
  const epoch = r.nullable(o.journal, (x) => r.string(x, 'journal'))
  return {doc: {version: STORE_VERSION, settings: readSettings(r, o.settings ?? {}), users}, keyId, epoch}
}

const USERS_OPEN = '"users":{'
const CLOSE = Buffer.from('\n}}\n')

/** Positioned reads of a file of `size` bytes. */
export interface ByteSource {
  size: number
  read(position: number, length: number): Buffer
}

/** The line that starts at `start` (without its newline) and where the next one starts. */
function lineAt(src: ByteSource, start: number, limit: number): {text: string; next: number} {
  const parts: Buffer[] = []
  for (let pos = start; pos < limit; ) {
    const chunk = src.read(pos, Math.min(4096, limit - pos))
    const nl = chunk.indexOf(0x0a)
    if (nl >= 0) {
      parts.push(chunk.subarray(0, nl))
      return {text: Buffer.concat(parts).toString('utf8'), next: pos + nl + 1}
    }
    parts.push(chunk)
    pos += chunk.length
  }
  return {text: Buffer.concat(parts).toString('utf8'), next: limit}
}

/** The first line that starts at or after `at` (a line starts after a newline). */
function nextLineStart(src: ByteSource, at: number, limit: number): number {
  for (let pos = at - 1; pos < limit; pos += 4096) {
    const nl = src.read(pos, Math.min(4096, limit - pos)).indexOf(0x0a)
    if (nl >= 0) return pos + nl + 1
  }
  return limit
}

const lineName = (line: string): string | undefined => /^"([A-Za-z0-9._-]+)":/.exec(line)?.[1]

/**
 * Finds a user's line by binary search: the encoder writes users sorted by name, one per line.
 * Never trusted for "absent": a miss is confirmed by a full scan, so a hand-reordered file
 * cannot hide a user (and let them in without a code).
 */
function findUserLine(src: ByteSource, name: string, bodyStart: number, bodyEnd: number): string | undefined {
  let lo = bodyStart
  let hi = bodyEnd
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2)
    let start = mid === lo ? lo : nextLineStart(src, mid, hi)
    if (start >= hi) start = lo
    const {text, next} = lineAt(src, start, bodyEnd)
    const found = lineName(text)
    if (found === undefined) break
    if (found === name) return text
    if (found < name) lo = next
    else hi = start
  }
  const whole = src.read(bodyStart - 1, bodyEnd - bodyStart + 1)
  const at = whole.indexOf(`\n${JSON.stringify(name)}:`)
  return at < 0 ? undefined : lineAt(src, bodyStart + at, bodyEnd).text
}

/**
 * Reads one user's record without parsing the others: the store is written one user per line,
 * so the header line and that user's line form a small store of their own, validated by the same
 * decoder. Returns undefined when the file does not have that layout (a hand-edited store);
 * callers then decode the whole document.
 */
export function decodeOneUser(src: ByteSource, name: string, where: string, keys: KeyRing): Decoded | undefined {
  const {text: head, next: bodyStart} = lineAt(src, 0, Math.min(src.size, 1 << 16))
  if (bodyStart >= src.size && !head.endsWith('"users":{}}')) return undefined
  if (!head.endsWith(USERS_OPEN)) return head.endsWith('"users":{}}') && bodyStart === src.size ? decodeStore(head, where, keys) : undefined
  if (src.size - CLOSE.length < bodyStart || !src.read(src.size - CLOSE.length, CLOSE.length).equals(CLOSE)) return undefined // cut short
  const line = findUserLine(src, name, bodyStart, src.size - CLOSE.length + 1)
  return decodeStore(`${head}${(line ?? '').replace(/,$/, '')}}}`, where, keys)
}

/** Any Buffer as a ByteSource. */
export const bufferSource = (buf: Buffer): ByteSource => ({size: buf.length, read: (p, n) => buf.subarray(p, p + n)})

/** A fresh journal epoch: every full write of the store starts a new journal. */
export const newEpoch = (): string => randomBytes(8).toString('hex')

/** One user per line: compact, yet diffable and cheap to scan. Secrets are sealed. */
export function encodeStore(doc: Doc, keys: KeyRing, epoch: string = newEpoch()): {text: string; keyId: string | null} {
  const sealed = [...doc.users.values()].some((u) => u.secret || u.pending)
  const current = sealed ? keys.current() : undefined
  const seal = (tag: string, secret: string | null) => (secret === null ? null : encryptSecret(current!.key, tag, secret))
  const byName = [...doc.users].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) // findUserLine relies on it
  const lines = byName.map(([name, u]) => {
    const record = {
      ...u,
      secret: seal(name, u.secret),
      pending: u.pending && {...u.pending, secret: seal(`${name}:pending`, u.pending.secret)},
    }
    return `${JSON.stringify(name)}:${JSON.stringify(record)}`
  })
  const keyId = current?.id ?? null
  const head = `{"version":${STORE_VERSION},"keyId":${JSON.stringify(keyId)},"journal":${JSON.stringify(epoch)},"settings":${JSON.stringify(doc.settings)},"users":{`
  return {text: lines.length === 0 ? `${head}}}\n` : `${head}\n${lines.join(',\n')}\n}}\n`, keyId}
}
