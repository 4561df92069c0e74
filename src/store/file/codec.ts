import {createHash, randomBytes} from 'node:crypto'
import {createRequire} from 'node:module'
import {type Doc, STORE_VERSION, type Settings} from '../../core/model.js'
import type {KeyRing} from '../keys.js'
import {type Decoded, decodeStore, sealWith} from '../sealed.js'

// The file store's layout (a header line, then one user per line, sorted by name): split, count,
// search and join its bytes. What a record holds, and how it is read and sealed, is ../sealed.ts.

const USERS_OPEN = '"users":{'
const CLOSE = Buffer.from('\n}}\n')

/**
 * A store's user lines as bytes, not decoded: line i is `"name":{…}`, at [starts[i], ends[i]) of
 * `buf` (without its `,` and newline); names are sorted. Consecutive lines are consecutive bytes
 * (joined by `,\n`), so a run of untouched lines is written back as one slice.
 */
export interface LineIndex {
  buf: Buffer
  /** How many lines. */
  count: number
  starts: Uint32Array
  ends: Uint32Array
  /** Where each line's name ends (its closing quote): the record's text starts 2 bytes after. */
  nameEnds: Uint32Array
  /** Line i's name, made when first asked for: a one-user change asks for a few dozen of 100 000. */
  name(i: number): string
}

/** A LineIndex over `buf`'s first `count` lines as found by splitStore. */
export function lineIndex(buf: Buffer, count: number, starts: Uint32Array, ends: Uint32Array, nameEnds: Uint32Array): LineIndex {
  const names: string[] = []
  return {buf, count, starts, ends, nameEnds, name: (i) => (names[i] ??= buf.toString('latin1', starts[i] + 1, nameEnds[i]))}
}

/** The store's header, validated, and its user lines, not decoded. */
export interface StoreLines {
  header: Decoded
  lines: LineIndex
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')
const [QUOTE, COLON, BRACE, CLOSE_BRACE, COMMA, NL] = [0x22, 0x3a, 0x7b, 0x7d, 0x2c, 0x0a]

/**
 * zlib's CRC-32 (Node 20.15 and later; null before): the lines' digest where Node has it. It
 * detects damage and hand edits (one goes unnoticed by chance once in 4 billion; neither digest is
 * an authenticator: whoever can write the file can recompute either) at a third of SHA-256's
 * time, which every update of a large store pays twice (checking the lines read, digesting the
 * lines written).
 */
let zlibCrc32: ((data: Uint8Array, value?: number) => number) | null | undefined
/** Loaded when first needed: a login of one user (the fast path) never is. */
const crc32 = () => (zlibCrc32 ??= (createRequire(import.meta.url)('node:zlib') as {crc32?: typeof zlibCrc32}).crc32 ?? null)
const crcHex = (value: number): string => value.toString(16).padStart(8, '0')

/** Whether the bytes after the header are exactly those tfactl wrote, by the digest the header records. */
function linesIntact(header: Decoded, body: Buffer): boolean {
  if (header.linesCrc32 !== null) {
    const crc = crc32()
    return crc !== null && crcHex(crc(body)) === header.linesCrc32
  }
  return header.linesSha256 !== null && sha256(body) === header.linesSha256
}

/** Bytes that may appear in a name on a line (validate.ts's usernames). */
const NAME_BYTE = new Uint8Array(256)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-') NAME_BYTE[c.charCodeAt(0)] = 1

/** Whether the bytes [b, bEnd) sort strictly after [a, aEnd) (names are ASCII: byte order is string order). */
function sortsAfter(raw: Buffer, a: number, aEnd: number, b: number, bEnd: number): boolean {
  for (; a < aEnd && b < bEnd; a++, b++) if (raw[a] !== raw[b]) return raw[b] > raw[a]
  return b < bEnd
}

/**
 * Splits a store in the encoder's layout (a header line, then one user per line, sorted by name)
 * into its header, validated, and the byte ranges of the user lines, not decoded. The header holds
 * a digest of the bytes after it as tfactl wrote them: lines that are not exactly those (a hand
 * edit, damage, a store written before the digest) are not trusted, and undefined is returned, as
 * for a file not in that layout: callers then decode and validate the whole store. The lines are
 * looked at byte by byte: no string is made for a line (a name is made when asked for).
 */
export function splitStore(raw: Buffer, where: string, keys: KeyRing): StoreLines | undefined {
  const nl = raw.indexOf(NL)
  if (nl < 0) return undefined
  const head = raw.toString('utf8', 0, nl)
  if (!head.endsWith(USERS_OPEN)) return undefined
  const header = decodeStore(`${head}}}`, where, keys)
  if (!linesIntact(header, raw.subarray(nl))) return undefined
  const bodyEnd = raw.length - CLOSE.length // the newline before `}}`
  if (bodyEnd <= nl + 1 || !raw.subarray(bodyEnd).equals(CLOSE)) return undefined
  let starts = new Uint32Array(1024)
  let ends = new Uint32Array(1024)
  let nameEnds = new Uint32Array(1024)
  let n = 0
  for (let pos = nl + 1; pos < bodyEnd + 1; n++) {
    let end = raw.indexOf(NL, pos)
    if (end < 0 || end > bodyEnd) return undefined
    const last = end === bodyEnd
    if (!last) {
      if (raw[end - 1] !== COMMA) return undefined
      end -= 1 // without the comma
    }
    if (raw[pos] !== QUOTE) return undefined
    let close = pos + 1
    while (close < end && NAME_BYTE[raw[close]] === 1) close++
    if (close === pos + 1 || raw[close] !== QUOTE || close + 2 >= end || raw[close + 1] !== COLON || raw[close + 2] !== BRACE || raw[end - 1] !== CLOSE_BRACE)
      return undefined
    if (n > 0 && !sortsAfter(raw, starts[n - 1] + 1, nameEnds[n - 1], pos + 1, close)) return undefined // sorted, no duplicates
    if (n === starts.length) {
      starts = grow(starts)
      ends = grow(ends)
      nameEnds = grow(nameEnds)
    }
    starts[n] = pos
    ends[n] = end
    nameEnds[n] = close
    pos = last ? end + 1 : end + 2
  }
  return {header, lines: lineIndex(raw, n, starts.subarray(0, n), ends.subarray(0, n), nameEnds.subarray(0, n))}
}

const grow = (a: Uint32Array<ArrayBuffer>): Uint32Array<ArrayBuffer> => {
  const b = new Uint32Array(a.length * 2)
  b.set(a)
  return b
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
 * The bytes of a store: the header line (everything but the users, with the digest of what
 * follows it: linesIntact), then one user per line (`"name":{…}`, sorted by name). `pieces` are runs of whole
 * lines, each already joined by `,\n`.
 */
export function joinStore(keyId: string | null, epoch: string, settings: Settings, oath: string | null, pieces: Buffer[]): Buffer[] {
  const body = pieces.length === 0 ? [EMPTY_BODY] : [BODY_START, ...pieces.flatMap((p, i) => (i === 0 ? [p] : [SEPARATOR, p])), CLOSE]
  let digest: string | undefined
  const crc32Of = pieces.length > 0 ? crc32() : null
  if (crc32Of) {
    let crc = 0
    for (const part of body) crc = crc32Of(part, crc)
    digest = `"linesCrc32":"${crcHex(crc)}"`
  } else if (pieces.length > 0) {
    const hash = createHash('sha256')
    for (const part of body) hash.update(part)
    digest = `"linesSha256":"${hash.digest('hex')}"`
  }
  const fields = [
    `"version":${STORE_VERSION}`,
    `"keyId":${JSON.stringify(keyId)}`,
    `"journal":${JSON.stringify(epoch)}`,
    `"settings":${JSON.stringify(settings)}`,
    ...(oath === null ? [] : [`"oath":${JSON.stringify(oath)}`]),
    ...(digest === undefined ? [] : [digest]),
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
  const byName = [...doc.users].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) // findUserLine relies on it
  const lines = byName.map(([name, u]) => `${JSON.stringify(name)}:${sealWith(current?.key, name, u)}`)
  const keyId = current?.id ?? null
  return {text: joinStore(keyId, epoch, doc.settings, oath, lines.length === 0 ? [] : [Buffer.from(lines.join(',\n'))]).join(''), keyId}
}
