import {isEmptyRecord, type Settings, type UserRecord} from '../../core/model.js'
import type {KeyRing} from '../keys.js'
import {encryptSecret} from '../secrets.js'
import {type HotState, KeyMissing, type Opened, sealRecord} from '../sealed.js'
import {joinStore, type LineIndex, lineIndex} from './codec.js'

/** What decoding one user's line gave, to tell later whether the record changed. */
interface Loaded {
  /** The record's text in the file (null: the file was decoded whole, every record is written anew). */
  text: string | null
  /** The record as its line says, before the journal: while it still equals this, the line is written back as it is. */
  fileJson: string
  /** The record as the command first saw it (journal applied): whether the update changed it. */
  seenJson: string
  /** Its secrets, sealed and open: an unchanged secret keeps its sealed form. */
  opened: Opened
}

/** Decodes (validates, opens the secrets of) one user's record text. */
export type DecodeUser = (name: string, text: string, opened: Opened) => UserRecord

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)
const [RAW, LOADED, GONE] = [0, 1, 2]
const mapSize = Object.getOwnPropertyDescriptor(Map.prototype, 'size')!.get!

/**
 * The users of a store read for an update: a Map of UserRecord like any other (commands and
 * core see no difference), whose records are decoded when first read. Records the update never
 * reads are neither decrypted, validated nor sealed again: their lines are written back as they
 * are. Whether the update changed anything is known from what it set, deleted or changed in the
 * records it read (no rendering of the whole store to compare).
 *
 * Iterating decodes every record, in the file's order (a full read, as before).
 */
export class StoredUsers extends Map<string, UserRecord> {
  /** The file's user lines (bytes, not decoded), sorted by name. */
  private lines: LineIndex = lineIndex(Buffer.alloc(0), 0, new Uint32Array(0), new Uint32Array(0), new Uint32Array(0))
  /** Per file line: RAW (only bytes), LOADED (decoded into the map), GONE (deleted, replaced or emptied). */
  private state = new Uint8Array(0)
  private rawCount = 0
  private readonly loaded = new Map<string, Loaded>()
  /** The journal's newest hot state per user, for records not decoded yet. */
  private readonly journal = new Map<string, HotState>()
  /** Names the update set or deleted. */
  private readonly touched = new Set<string>()
  private complete = false
  private hook?: (name: string, record: UserRecord) => void

  private constructor(
    private readonly decode: DecodeUser,
    private readonly where = 'store',
  ) {
    super()
  }

  /** Users from a store's lines (codec.ts splitStore). */
  static fromLines(lines: LineIndex, decode: DecodeUser, where?: string): StoredUsers {
    const users = new StoredUsers(decode, where)
    users.lines = lines
    users.state = new Uint8Array(lines.count)
    users.rawCount = lines.count
    return users
  }

  /** Users from a store decoded whole (not in the line layout): every record is written anew. */
  static fromDecoded(records: Map<string, UserRecord>): StoredUsers {
    const users = new StoredUsers(() => {
      throw new Error('no record text to decode')
    })
    for (const [name, record] of records) {
      users.loaded.set(name, {text: null, fileJson: '', seenJson: JSON.stringify(record), opened: new Map()})
      Map.prototype.set.call(users, name, record)
    }
    return users
  }

  /** The file line of `name` (binary search of the sorted names), or -1. */
  private find(name: string): number {
    const i = this.firstAtOrAfter(name)
    return i < this.lines.count && this.lines.name(i) === name ? i : -1
  }

  /** The first file line whose name is `name` or sorts after it (the count when none does). */
  private firstAtOrAfter(name: string): number {
    let lo = 0
    let hi = this.lines.count
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.lines.name(mid) < name) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** The file line of `name` while it is only bytes, or -1. */
  private rawLine(name: string): number {
    const i = this.find(name)
    return i >= 0 && this.state[i] === RAW ? i : -1
  }

  /** A line's record text (after `"name":`). */
  private text(i: number): string {
    return this.lines.buf.toString('utf8', this.lines.nameEnds[i] + 2, this.lines.ends[i])
  }

  private drop(i: number): void {
    if (i < 0 || this.state[i] !== RAW) return
    this.state[i] = GONE
    this.rawCount--
  }

  /** Applies the journal's hot state, to each record when it is decoded (records it empties go). */
  applyJournal(entries: Map<string, HotState>): void {
    for (const [name, state] of entries) {
      const record = super.get(name)
      if (record) {
        Object.assign(record, state)
        const seen = this.loaded.get(name)
        if (seen) seen.seenJson = JSON.stringify(record)
        if (isEmptyRecord(record)) {
          super.delete(name)
          this.loaded.delete(name)
        }
      } else if (this.rawLine(name) >= 0) this.journal.set(name, state)
    }
  }

  /** Runs `hook` on each record as it is decoded, before the caller sees it (changes it makes count as changes). */
  onLoad(hook: (name: string, record: UserRecord) => void): void {
    this.hook = hook
  }

  override get(name: string): UserRecord | undefined {
    const record = super.get(name)
    if (record !== undefined) return record
    const i = this.rawLine(name)
    return i < 0 ? undefined : this.load(i)
  }

  override has(name: string): boolean {
    if (super.has(name)) return true
    const i = this.rawLine(name)
    return i >= 0 && !this.vanishes(i)
  }

  override set(name: string, record: UserRecord): this {
    this.drop(this.rawLine(name))
    this.journal.delete(name)
    this.touched.add(name)
    return super.set(name, record)
  }

  override delete(name: string): boolean {
    const had = this.has(name)
    this.drop(this.rawLine(name))
    this.journal.delete(name)
    if (had) this.touched.add(name)
    return super.delete(name) || had
  }

  override clear(): void {
    for (let i = 0; i < this.lines.count; i++) if (this.state[i] === RAW) this.touched.add(this.lines.name(i))
    for (const name of super.keys()) this.touched.add(name)
    this.state.fill(GONE)
    this.rawCount = 0
    this.journal.clear()
    super.clear()
  }

  /** The number of users, without decoding any record (records the journal empties aside). */
  count(): number {
    for (const name of this.journal.keys()) this.vanishes(this.rawLine(name))
    return mapSize.call(this) + this.rawCount
  }

  override forEach(fn: (record: UserRecord, name: string, map: Map<string, UserRecord>) => void, thisArg?: unknown): void {
    this.decodeAll()
    super.forEach(fn, thisArg)
  }

  override entries(): MapIterator<[string, UserRecord]> {
    this.decodeAll()
    return super.entries()
  }

  override keys(): MapIterator<string> {
    this.decodeAll()
    return super.keys()
  }

  override values(): MapIterator<UserRecord> {
    this.decodeAll()
    return super.values()
  }

  override [Symbol.iterator](): MapIterator<[string, UserRecord]> {
    return this.entries()
  }

  /** Whether the update set, deleted or changed any record. */
  changed(): boolean {
    return this.touched.size > 0 || [...this.loaded].some(([name, l]) => super.has(name) && JSON.stringify(super.get(name)) !== l.seenJson)
  }

  /** The users the update set, deleted or changed. */
  changedUsers(): Set<string> {
    const names = new Set(this.touched)
    for (const [name, l] of this.loaded) if (super.has(name) && JSON.stringify(super.get(name)) !== l.seenJson) names.add(name)
    return names
  }

  /**
   * The store's bytes. Runs of lines of records never decoded are copied as they are, one slice
   * each (a journal entry is spliced into its record's JSON, the sealed secrets untouched);
   * decoded records are written anew, re-sealing only a secret that changed. When the key new
   * writes use is not the one that sealed the file (a rotation), every secret is sealed again.
   */
  encode(settings: Settings, keys: KeyRing, fileKeyId: string | null, epoch: string, oath: string | null): {data: Buffer[]; keyId: string | null} {
    // Lines carried over stay sealed with the file's key, and the header keeps naming it; a secret
    // sealed now must use that same key (when it is gone, sealing fails rather than mix keys).
    const fileKey = fileKeyId === null ? undefined : keys.byId(fileKeyId)
    let current: {id: string; key: Buffer} | undefined
    const key = () => {
      if (!current && this.rawCount > 0 && fileKeyId !== null && !fileKey) throw new KeyMissing(this.where, keys.path, fileKeyId)
      return (current ??= keys.current())
    }
    // New writes use another key (a rotation): every secret is sealed again.
    const rekey = fileKey !== undefined && key().id !== fileKeyId
    if (rekey) this.decodeAll()
    let sealedAny = false
    const {buf, count, starts, ends} = this.lines
    const pieces: Buffer[] = []
    let run: [number, number] | undefined // a run of consecutive carried lines: [first line, last line]
    const flush = () => {
      if (run) pieces.push(buf.subarray(starts[run[0]], ends[run[1]]))
      run = undefined
    }
    const line = (text: string) => {
      flush()
      pieces.push(Buffer.from(text))
    }
    const record = (name: string) => {
      const r = super.get(name)!
      const l = this.loaded.get(name)
      if (r.secret || r.pending) sealedAny = true
      if (l?.text != null && !rekey && JSON.stringify(r) === l.fileJson) return line(`"${name}":${l.text}`)
      const seal = (tag: string, secret: string | null): string | null => {
        if (secret === null) return null
        const old = rekey ? undefined : l?.opened.get(tag)
        return old?.clear === secret ? old.sealed : encryptSecret(key().key, tag, secret)
      }
      line(`${JSON.stringify(name)}:${JSON.stringify(sealRecord(name, r, seal))}`)
    }
    const added = [...super.keys()].filter((n) => this.find(n) < 0).sort(byName) // new users (all of them for a store decoded whole)
    const addedAt = added.map((n) => this.firstAtOrAfter(n)) // the file line each goes before
    // lines not decoded that the journal changes, by line: no name is made for the others
    const journaled = new Map<number, HotState>()
    for (const [name, state] of this.journal) {
      const i = this.rawLine(name)
      if (i >= 0) journaled.set(i, state)
    }
    let a = 0
    for (let i = 0; i < count; i++) {
      while (a < added.length && addedAt[a] <= i) record(added[a++])
      if (this.state[i] === RAW) {
        const state = journaled.get(i)
        if (state) {
          const text = this.carry(this.text(i), state)
          if (text !== undefined) line(`"${this.lines.name(i)}":${text}`)
        } else if (run && run[1] === i - 1) run[1] = i
        else {
          flush()
          run = [i, i]
        }
      } else if (super.has(this.lines.name(i))) record(this.lines.name(i))
    }
    while (a < added.length) record(added[a++])
    flush()
    const keyId = this.rawCount > 0 && fileKeyId !== null ? fileKeyId : sealedAny ? key().id : null
    return {data: joinStore(keyId, epoch, settings, oath, pieces), keyId}
  }

  /** A record's text with the journal's state spliced in (no decoding of its secrets); undefined when that empties it. */
  private carry(text: string, state: HotState): string | undefined {
    const o = JSON.parse(text)
    Object.assign(o, state)
    return isEmptyRecord(o) ? undefined : JSON.stringify(o)
  }

  private load(i: number): UserRecord | undefined {
    const name = this.lines.name(i)
    const text = this.text(i)
    const opened: Opened = new Map()
    const record = this.decode(name, text, opened)
    this.state[i] = LOADED
    this.rawCount--
    const fileJson = JSON.stringify(record)
    const state = this.journal.get(name)
    if (state) {
      Object.assign(record, state)
      this.journal.delete(name)
    }
    if (isEmptyRecord(record)) {
      this.state[i] = GONE // emptied by the journal: dropped at the next write, as a full read would
      return undefined
    }
    this.loaded.set(name, {text, fileJson, seenJson: state ? JSON.stringify(record) : fileJson, opened})
    super.set(name, record)
    this.hook?.(name, record)
    return record
  }

  /** Whether the journal empties a record not decoded yet (looked at without opening its secrets). */
  private vanishes(i: number): boolean {
    if (i < 0) return false
    const state = this.journal.get(this.lines.name(i))
    if (!state) return false
    let o: UserRecord
    try {
      o = {...JSON.parse(this.text(i)), ...state}
    } catch {
      return false // decoding it reports the problem
    }
    if (!isEmptyRecord(o)) return false
    this.drop(i)
    this.journal.delete(this.lines.name(i))
    return true
  }

  /** Decodes every record, and puts them in the file's order (then the added ones). */
  private decodeAll(): void {
    if (this.complete && this.rawCount === 0) return
    const names = Array.from({length: this.lines.count}, (_, i) => this.lines.name(i))
    for (let i = 0; i < names.length; i++) if (this.state[i] === RAW) this.load(i)
    const inFile = names.filter((n) => super.has(n))
    const added = [...super.keys()].filter((n) => this.find(n) < 0)
    const records = [...inFile, ...added].map((n) => [n, super.get(n)!] as const)
    super.clear()
    for (const [name, record] of records) super.set(name, record)
    this.complete = true
  }
}

// Map's own `size` reads only the decoded records.
Object.defineProperty(StoredUsers.prototype, 'size', {
  get(this: StoredUsers) {
    return this.count()
  },
})
