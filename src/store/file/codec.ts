import {createHash, randomBytes} from 'node:crypto'
import {EXIT, storeError, TfaError} from '../../core/errors.js'
import {
  DEFAULT_SETTINGS,
  DIGITS,
  type Doc,
  type Enrolment,
  type HashedCodes,
  INTERVALS,
  STORE_VERSION,
  type Settings,
  type UserRecord,
} from '../../core/model.js'
import {ALGORITHMS} from '../../core/totp.js'
import {checkIssuer, checkUsername} from '../../core/validate.js'
import type {KeyRing} from '../keys.js'
import {decryptSecret, encryptSecret} from '../secrets.js'

type Json = Record<string, unknown>

/**
 * The key file that sealed a store's secrets is missing or another one. The store's `.bak` is
 * sealed with the same key, so the way out is the key itself, or 2FA off without it.
 */
export class KeyMissing extends TfaError {
  constructor(where: string, keyPath: string | null | undefined, keyId: string) {
    super(
      `${where}: keyId: the key file ${keyPath ?? '(<store>.key)'} is missing or is not the key (id ${keyId}) that sealed these secrets: put that key file back, or turn 2FA off without it with tfactl twofactor:disable`,
      EXIT.store,
      'store',
    )
  }
}

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
    return Number.isInteger(v) && (v as number) >= min && (v as number) <= max
      ? (v as number)
      : this.fail(path, `expected a whole number from ${min} to ${max}`)
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

/** A sealed secret and what it opened to, so that an unchanged secret is written back without sealing it again. */
export type Opened = Map<string, {sealed: string; clear: string}>

function readUser(r: Reader, name: string, v: unknown, key: () => Buffer, opened?: Opened): UserRecord {
  const path = `users.${name}`
  try {
    checkUsername(name)
  } catch {
    r.fail(path, 'invalid username')
  }
  const o = r.object(v, path)
  const open = (tag: string) => (sealed: string) => {
    const clear = decryptSecret(key(), tag, sealed, r.where)
    opened?.set(tag, {sealed, clear})
    return clear
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
      return {
        salt: r.string(b.salt, `${path}.bypass.salt`),
        hash: r.string(b.hash, `${path}.bypass.hash`),
        expiresAt: r.date(b.expiresAt, `${path}.bypass.expiresAt`),
      }
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
  /** The digest of the pam_oath users file written with this store (src/store/oathfile/sync.ts); null: none. */
  oath: string | null
  /** The SHA-256 of the bytes after the header line, as tfactl wrote them (null: not recorded). */
  linesSha256: string | null
}

/** The key that opens a store's secrets, looked up when the first one is opened. */
function keyFor(r: Reader, keyId: string | null, keys: KeyRing): () => Buffer {
  return () => {
    if (keyId === null) return r.fail('keyId', 'missing, but the store holds encrypted secrets')
    const key = keys.byId(keyId)
    if (!key) throw new KeyMissing(r.where, keys.path, keyId)
    return key
  }
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
  const key = keyFor(r, keyId, keys)
  const users = new Map<string, UserRecord>()
  for (const [name, value] of Object.entries(r.object(o.users ?? {}, 'users'))) users.set(name, readUser(r, name, value, key))
  const epoch = r.nullable(o.journal, (x) => r.string(x, 'journal'))
  const oath = r.nullable(o.oath, (x) => r.string(x, 'oath'))
  const linesSha256 = r.nullable(o.linesSha256, (x) => r.string(x, 'linesSha256'))
  return {doc: {version: STORE_VERSION, settings: readSettings(r, o.settings ?? {}), users}, keyId, epoch, oath, linesSha256}
}

const USERS_OPEN = '"users":{'
const CLOSE = Buffer.from('\n}}\n')

/**
 * A store's user lines as bytes, not decoded: line i is `"name":{…}`, at [starts[i], ends[i]) of
 * `buf` (without its `,` and newline); names are sorted. Consecutive lines are consecutive bytes
 * (joined by `,\n`), so a run of untouched lines is written back as one slice.
 */
export interface LineIndex {
  buf: Buffer
  names: string[]
  starts: Uint32Array
  ends: Uint32Array
}

/** The store's header, validated, and its user lines, not decoded. */
export interface StoreLines {
  header: Decoded
  lines: LineIndex
}

const LINE_NAME = /^[A-Za-z0-9._-]+$/
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')
const [QUOTE, COLON, BRACE, CLOSE_BRACE, COMMA, NL] = [0x22, 0x3a, 0x7b, 0x7d, 0x2c, 0x0a]

/**
 * Splits a store in the encoder's layout (a header line, then one user per line, sorted by name)
 * into its header, validated, and the byte ranges of the user lines, not decoded. The header holds
 * the SHA-256 of the bytes after it as tfactl wrote them: lines that are not exactly those (a hand
 * edit, damage, a store written before the digest) are not trusted, and undefined is returned, as
 * for a file not in that layout: callers then decode and validate the whole store.
 */
export function splitStore(raw: Buffer, where: string, keys: KeyRing): StoreLines | undefined {
  const nl = raw.indexOf(NL)
  if (nl < 0) return undefined
  const head = raw.toString('utf8', 0, nl)
  if (!head.endsWith(USERS_OPEN)) return undefined
  const header = decodeStore(`${head}}}`, where, keys)
  if (header.linesSha256 === null || sha256(raw.subarray(nl)) !== header.linesSha256) return undefined
  const bodyEnd = raw.length - CLOSE.length // the newline before `}}`
  if (bodyEnd <= nl + 1 || !raw.subarray(bodyEnd).equals(CLOSE)) return undefined
  const names: string[] = []
  const starts: number[] = []
  const ends: number[] = []
  for (let pos = nl + 1; pos < bodyEnd + 1; ) {
    let end = raw.indexOf(NL, pos)
    if (end < 0 || end > bodyEnd) return undefined
    const last = end === bodyEnd
    if (!last) {
      if (raw[end - 1] !== COMMA) return undefined
      end -= 1 // without the comma
    }
    const close = raw.indexOf(QUOTE, pos + 1)
    if (raw[pos] !== QUOTE || close < 0 || close + 2 >= end || raw[close + 1] !== COLON || raw[close + 2] !== BRACE || raw[end - 1] !== CLOSE_BRACE)
      return undefined
    const name = raw.toString('latin1', pos + 1, close)
    if (!LINE_NAME.test(name) || (names.length > 0 && name <= names[names.length - 1])) return undefined // sorted, no duplicates
    names.push(name)
    starts.push(pos)
    ends.push(end)
    pos = last ? end + 1 : end + 2
  }
  return {header, lines: {buf: raw, names, starts: Uint32Array.from(starts), ends: Uint32Array.from(ends)}}
}

/** Decodes (validates, opens the secrets of) one user's record text from a store with this header. */
export function decodeUserText(name: string, text: string, where: string, header: Pick<Decoded, 'keyId'>, keys: KeyRing, opened: Opened): UserRecord {
  const r = new Reader(where)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    r.fail(`users.${name}`, `not valid JSON (${(error as Error).message})`)
  }
  return readUser(r, name, value, keyFor(r, header.keyId, keys), opened)
}

/** What a store's lines say about its users, read without decoding them (twofactor:status). */
export interface LineCounts {
  header: Decoded
  total: number
  /** Users whose line holds a secret. */
  secrets: number
  /** Users without one, with their record text: the journal may empty these records. */
  noSecret: Map<string, string>
}

const SECRET_KEY = Buffer.from('{"secret":')

/**
 * Counts users, and users with a secret, from the bytes of a store in the line layout: each line
 * is looked at where its record starts (the encoder writes `secret` first). Undefined when the
 * file is not in that layout (callers then read it whole, which also reports damage).
 */
export function countLines(raw: Buffer, where: string, keys: KeyRing): LineCounts | undefined {
  const nl = raw.indexOf(NL)
  if (nl < 0) return undefined
  const head = raw.toString('utf8', 0, nl)
  if (!head.endsWith(USERS_OPEN)) return undefined
  const header = decodeStore(`${head}}}`, where, keys)
  const bodyEnd = raw.length - CLOSE.length
  if (bodyEnd <= nl + 1 || !raw.subarray(bodyEnd).equals(CLOSE)) return undefined
  const counts: LineCounts = {header, total: 0, secrets: 0, noSecret: new Map()}
  for (let pos = nl + 1; pos < bodyEnd + 1; ) {
    let end = raw.indexOf(NL, pos)
    if (end < 0 || end > bodyEnd) return undefined
    const next = end + 1
    if (end !== bodyEnd) end -= 1 // the comma
    const close = raw.indexOf(QUOTE, pos + 1)
    if (raw[pos] !== QUOTE || close < 0 || close + 2 >= end || raw[close + 1] !== COLON) return undefined
    const at = close + 2
    let keyed = true
    for (let k = 0; k < SECRET_KEY.length && keyed; k++) keyed = raw[at + k] === SECRET_KEY[k]
    const v = at + SECRET_KEY.length
    counts.total++
    if (keyed && raw[v] === QUOTE) counts.secrets++
    else {
      const text = raw.toString('utf8', at, end)
      let secret: unknown
      try {
        secret = keyed && raw[v] === 0x6e /* null */ ? null : JSON.parse(text).secret
      } catch {
        return undefined
      }
      if (secret) counts.secrets++
      else counts.noSecret.set(raw.toString('latin1', pos + 1, close), text)
    }
    pos = next
  }
  return counts
}

const SEPARATOR = Buffer.from(',\n')
const BODY_START = Buffer.from('\n')
const EMPTY_BODY = Buffer.from('}}\n')

/**
 * The bytes of a store: the header line (everything but the users, with the SHA-256 of what
 * follows it), then one user per line (`"name":{…}`, sorted by name). `pieces` are runs of whole
 * lines, each already joined by `,\n`.
 */
export function joinStore(keyId: string | null, epoch: string, settings: Settings, oath: string | null, pieces: Buffer[]): Buffer[] {
  const body = pieces.length === 0 ? [EMPTY_BODY] : [BODY_START, ...pieces.flatMap((p, i) => (i === 0 ? [p] : [SEPARATOR, p])), CLOSE]
  let digest: string | null = null
  if (pieces.length > 0) {
    const hash = createHash('sha256')
    for (const part of body) hash.update(part)
    digest = hash.digest('hex')
  }
  const fields = [
    `"version":${STORE_VERSION}`,
    `"keyId":${JSON.stringify(keyId)}`,
    `"journal":${JSON.stringify(epoch)}`,
    `"settings":${JSON.stringify(settings)}`,
    ...(oath === null ? [] : [`"oath":${JSON.stringify(oath)}`]),
    ...(digest === null ? [] : [`"linesSha256":"${digest}"`]),
  ]
  return [Buffer.from(`{${fields.join(',')},"users":{`), ...body]
}

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

/** A store's header line alone (settings, key id, epoch), validated; undefined when not in the line layout. */
export function decodeHeader(src: ByteSource, where: string, keys: KeyRing): Decoded | undefined {
  const {text: head} = lineAt(src, 0, Math.min(src.size, 1 << 16))
  if (head.endsWith(USERS_OPEN)) return decodeStore(`${head}}}`, where, keys)
  return head.endsWith('"users":{}}') ? decodeStore(head, where, keys) : undefined
}

/** Any Buffer as a ByteSource. */
export const bufferSource = (buf: Buffer): ByteSource => ({size: buf.length, read: (p, n) => buf.subarray(p, p + n)})

/** A fresh journal epoch: every full write of the store starts a new journal. */
export const newEpoch = (): string => randomBytes(8).toString('hex')

/** One user per line: compact, yet diffable and cheap to scan. Secrets are sealed. */
export function encodeStore(doc: Doc, keys: KeyRing, epoch: string = newEpoch(), oath: string | null = null): {text: string; keyId: string | null} {
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
  return {text: joinStore(keyId, epoch, doc.settings, oath, lines.length === 0 ? [] : [Buffer.from(lines.join(',\n'))]).join(''), keyId}
}
