import {EXIT, storeError, TfaError} from '../core/errors.js'
import {
  DEFAULT_SETTINGS,
  DIGITS,
  type Doc,
  type Enrolment,
  type HashedCodes,
  INTERVALS,
  maxDriftSteps,
  STORE_VERSION,
  type Settings,
  type UserRecord,
} from '../core/model.js'
import {ALGORITHMS} from '../core/totp.js'
import {checkIssuer, checkUsername} from '../core/validate.js'
import type {KeyRing} from './keys.js'
import {decryptSecret, encryptSecret} from './secrets.js'

// Records as every backend stores them: a user's record is JSON whose secrets are sealed
// (AES-256-GCM, secrets.ts) under the tag `name` (the secret) or `name:pending` (a pending one);
// settings are JSON too. Reading validates every field (a problem → exit 3 naming the field) and
// opens the secrets; sealing is the reverse. The file store (file/) lays the records out in a
// file, the database (postgres/) keeps one row each: both read and seal them here.

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
    const e = readEnrolment(r, r.object(p, `${path}.pending`), `${path}.pending`, open(secretTag(name, true)))
    return e.secret ? (e as Enrolment) : r.fail(`${path}.pending.secret`, 'expected a secret')
  })
  const e = readEnrolment(r, o, path, open(name))
  const h = readHotState(r, o, path)
  // written out, not spread: one object of one shape (a responder decodes thousands a second)
  return {
    secret: e.secret,
    interval: e.interval,
    digits: e.digits,
    algorithm: e.algorithm,
    createdAt: e.createdAt,
    lastUsedStep: h.lastUsedStep,
    lastUsedAt: h.lastUsedAt,
    driftSteps: h.driftSteps,
    failures: h.failures,
    lockedUntil: h.lockedUntil,
    recovery: h.recovery,
    bypass: h.bypass,
    pending,
  }
}

/** The part of a record a login changes (see journal.ts). */
export type HotState = Pick<UserRecord, 'lastUsedStep' | 'lastUsedAt' | 'driftSteps' | 'failures' | 'lockedUntil' | 'recovery' | 'bypass'>

export const hotStateOf = (u: UserRecord): HotState => ({
  lastUsedStep: u.lastUsedStep,
  lastUsedAt: u.lastUsedAt,
  driftSteps: u.driftSteps, // undefined (no drift) is left out of the JSON
  failures: u.failures,
  lockedUntil: u.lockedUntil,
  recovery: u.recovery,
  bypass: u.bypass,
})

export function readHotState(r: Reader, o: Json, path: string): HotState {
  const drift = r.nullable(o.driftSteps, (x) => r.int(x, `${path}.driftSteps`, -maxDriftSteps(30), maxDriftSteps(30))) ?? 0
  return {
    lastUsedStep: r.nullable(o.lastUsedStep, (x) => r.int(x, `${path}.lastUsedStep`, 0, Number.MAX_SAFE_INTEGER)),
    lastUsedAt: r.nullable(o.lastUsedAt, (x) => r.date(x, `${path}.lastUsedAt`)),
    driftSteps: drift === 0 ? undefined : drift, // a state without drift clears the record's (overlay)
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
  /** The digest of the pam_oath users file written with this store (src/store/oathfile/projection.ts); null: none. */
  oath: string | null
  /** The SHA-256 of the bytes after the header line, as tfactl wrote them (null: not recorded). */
  linesSha256: string | null
  /** Their CRC-32 instead (hex), written where Node has zlib.crc32 (null: not recorded). */
  linesCrc32: string | null
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
  const linesCrc32 = r.nullable(o.linesCrc32, (x) => r.string(x, 'linesCrc32'))
  return {doc: {version: STORE_VERSION, settings: readSettings(r, o.settings ?? {}), users}, keyId, epoch, oath, linesSha256, linesCrc32}
}

/** Decodes (validates, opens the secrets of) one user's record text from a store with this header. */
export function decodeUserText(name: string, text: string, where: string, header: Pick<Decoded, 'keyId'>, keys: KeyRing, opened?: Opened): UserRecord {
  const r = new Reader(where)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    r.fail(`users.${name}`, `not valid JSON (${(error as Error).message})`)
  }
  return readUser(r, name, value, keyFor(r, header.keyId, keys), opened)
}

/** The tag a user's secret is sealed under (its pending one's: `name:pending`): a sealed secret moved to another user does not open. */
export const secretTag = (name: string, pending = false): string => (pending ? `${name}:pending` : name)

/** A record as stored: its secrets replaced by what `seal(tag, secret)` gives (null stays null). */
export function sealRecord<S>(
  name: string,
  u: UserRecord,
  seal: (tag: string, secret: string | null) => S,
): Omit<UserRecord, 'secret' | 'pending'> & {secret: S; pending: (Omit<Enrolment, 'secret'> & {secret: S}) | null} {
  return {...u, secret: seal(secretTag(name), u.secret), pending: u.pending && {...u.pending, secret: seal(secretTag(name, true), u.pending.secret)}}
}

/** Seals with one key (the record as a string ready to store). */
export const sealWith = (key: Buffer | undefined, name: string, u: UserRecord): string =>
  JSON.stringify(sealRecord(name, u, (tag, secret) => (secret === null ? null : encryptSecret(key!, tag, secret))))

/**
 * A whole store from its parts as a backend keeps them (settings as JSON, records as sealed JSON
 * text by name), validated and opened by the same reader as a store file.
 */
export function decodeParts(settings: string, keyId: string | null, users: Iterable<[string, string]>, where: string, keys: KeyRing): Doc {
  const lines = [...users].map(([name, data]) => `${JSON.stringify(name)}:${data}`).join(',')
  return decodeStore(`{"version":${STORE_VERSION},"keyId":${JSON.stringify(keyId)},"settings":${settings},"users":{${lines}}}`, where, keys).doc
}
