import {isEmptyRecord, type Settings, type UserRecord} from '../../core/model.js'
import type {KeyRing} from '../keys.js'
import {encryptSecret} from '../secrets.js'
import {type HotState, joinStore, type Opened} from './codec.js'

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
  /** Names whose record is still only text, in the file's (sorted) order. */
  private readonly raw = new Map<string, string>()
  /** Every name the file listed, sorted: the order of iteration and of the written lines. */
  private readonly order: string[] = []
  private readonly loaded = new Map<string, Loaded>()
  /** The journal's newest hot state per user, for records not decoded yet. */
  private readonly journal = new Map<string, HotState>()
  /** Names the update set or deleted. */
  private readonly touched = new Set<string>()
  private complete = false
  private hook?: (name: string, record: UserRecord) => void

  private constructor(private readonly decode: DecodeUser) {
    super()
  }

  /** Users from a store's lines (name, record text), sorted by name as the encoder writes them. */
  static fromLines(lines: Array<[string, string]>, decode: DecodeUser): StoredUsers {
    const users = new StoredUsers(decode)
    for (const [name, text] of lines) {
      users.raw.set(name, text)
      users.order.push(name)
    }
    return users
  }

  /** Users from a store decoded whole (not in the line layout): every record is written anew. */
  static fromDecoded(records: Map<string, UserRecord>): StoredUsers {
    const users = new StoredUsers(() => {
      throw new Error('no record text to decode')
    })
    for (const [name, record] of records) {
      const json = JSON.stringify(record)
      users.loaded.set(name, {text: null, fileJson: '', seenJson: json, opened: new Map()})
      Map.prototype.set.call(users, name, record)
      users.order.push(name)
    }
    users.order.sort(byName)
    return users
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
      } else if (this.raw.has(name)) this.journal.set(name, state)
    }
  }

  /** Runs `hook` on each record as it is decoded, before the caller sees it (changes it makes count as changes). */
  onLoad(hook: (name: string, record: UserRecord) => void): void {
    this.hook = hook
  }

  override get(name: string): UserRecord | undefined {
    const record = super.get(name)
    return record !== undefined || !this.raw.has(name) ? record : this.load(name)
  }

  override has(name: string): boolean {
    return super.has(name) || (this.raw.has(name) && !this.vanishes(name))
  }

  override set(name: string, record: UserRecord): this {
    this.raw.delete(name)
    this.journal.delete(name)
    this.touched.add(name)
    return super.set(name, record)
  }

  override delete(name: string): boolean {
    const had = this.has(name)
    this.raw.delete(name)
    this.journal.delete(name)
    if (had) this.touched.add(name)
    return super.delete(name) || had
  }

  override clear(): void {
    for (const name of [...this.raw.keys(), ...super.keys()]) this.touched.add(name)
    this.raw.clear()
    this.journal.clear()
    super.clear()
  }

  /** The number of users, without decoding any record (records the journal empties aside). */
  count(): number {
    for (const name of this.journal.keys()) this.vanishes(name)
    return mapSize.call(this) + this.raw.size
  }

  /** How many users have a secret, read from the lines without opening them (decoded records as they are). */
  countSecrets(): number {
    let n = 0
    for (const name of this.journal.keys()) this.vanishes(name)
    for (const record of super.values()) if (record.secret) n++
    for (const text of this.raw.values()) {
      // The encoder writes `secret` first; any other order is parsed.
      if (text.startsWith('{"secret":"')) n++
      else if (!text.startsWith('{"secret":null') && JSON.parse(text).secret) n++
    }
    return n
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
   * The store's text. Lines of records never decoded are copied as they are (a journal entry
   * is spliced into the record's JSON, its sealed secrets untouched); decoded records are
   * written anew, re-sealing only a secret that changed. When the key new writes use is not
   * the one that sealed the file (a rotation), every secret is sealed again.
   */
  encode(settings: Settings, keys: KeyRing, fileKeyId: string | null, epoch: string, oath: string | null): {text: string; keyId: string | null} {
    let current: {id: string; key: Buffer} | undefined
    const key = () => (current ??= keys.current())
    // Lines carried over hold secrets sealed with the file's key. A store that names no key, or
    // whose key is gone, must hold no sealed secret: its lines are decoded (and fail if they do).
    if (this.raw.size > 0 && (fileKeyId === null || !keys.byId(fileKeyId))) this.decodeAll()
    // New writes use another key (a rotation): every secret is sealed again.
    const rekey = fileKeyId !== null && keys.byId(fileKeyId) !== undefined && key().id !== fileKeyId
    if (rekey) this.decodeAll()
    let sealedAny = this.raw.size > 0 && fileKeyId !== null
    const lines: string[] = []
    for (const name of this.writeOrder()) {
      const text = this.raw.get(name)
      if (text !== undefined) {
        const line = this.carry(text, this.journal.get(name))
        if (line !== undefined) lines.push(`"${name}":${line}`)
        continue
      }
      const record = super.get(name)!
      const l = this.loaded.get(name)
      if (record.secret || record.pending) sealedAny = true
      if (l?.text != null && !rekey && JSON.stringify(record) === l.fileJson) {
        lines.push(`"${name}":${l.text}`)
        continue
      }
      const seal = (tag: string, secret: string | null): string | null => {
        if (secret === null) return null
        const old = rekey ? undefined : l?.opened.get(tag)
        return old?.clear === secret ? old.sealed : encryptSecret(key().key, tag, secret)
      }
      const sealed = {...record, secret: seal(name, record.secret), pending: record.pending && {...record.pending, secret: seal(`${name}:pending`, record.pending.secret)}}
      lines.push(`${JSON.stringify(name)}:${JSON.stringify(sealed)}`)
    }
    const keyId = sealedAny ? key().id : null
    return {text: joinStore(keyId, epoch, settings, oath, lines), keyId}
  }

  /** A record's text with the journal's state spliced in (no decoding of its secrets); undefined when that empties it. */
  private carry(text: string, state: HotState | undefined): string | undefined {
    if (!state) return text
    const o = JSON.parse(text)
    Object.assign(o, state)
    return isEmptyRecord(o) ? undefined : JSON.stringify(o)
  }

  /** Names present, sorted (the file's order merged with names the update added). */
  private writeOrder(): string[] {
    const known = new Set(this.order)
    const added = [...super.keys()].filter((n) => !known.has(n)).sort(byName)
    const out: string[] = []
    let a = 0
    for (const name of this.order) {
      if (!this.raw.has(name) && !super.has(name)) continue
      while (a < added.length && added[a] < name) out.push(added[a++])
      out.push(name)
    }
    while (a < added.length) out.push(added[a++])
    return out
  }

  private load(name: string): UserRecord | undefined {
    const text = this.raw.get(name)!
    const opened: Opened = new Map()
    const record = this.decode(name, text, opened)
    this.raw.delete(name)
    const fileJson = JSON.stringify(record)
    const state = this.journal.get(name)
    if (state) {
      Object.assign(record, state)
      this.journal.delete(name)
    }
    if (isEmptyRecord(record)) return undefined // emptied by the journal: dropped at the next write, as a full read would
    this.loaded.set(name, {text, fileJson, seenJson: state ? JSON.stringify(record) : fileJson, opened})
    super.set(name, record)
    this.hook?.(name, record)
    return record
  }

  /** Whether the journal empties a record not decoded yet (looked at without opening its secrets). */
  private vanishes(name: string): boolean {
    const state = this.journal.get(name)
    const text = this.raw.get(name)
    if (!state || text === undefined) return false
    let o: UserRecord
    try {
      o = {...JSON.parse(text), ...state}
    } catch {
      return false // decoding it reports the problem
    }
    if (!isEmptyRecord(o)) return false
    this.raw.delete(name)
    this.journal.delete(name)
    return true
  }

  /** Decodes every record, and puts them in the file's order (then the added ones). */
  private decodeAll(): void {
    if (this.complete && this.raw.size === 0) return
    for (const name of [...this.raw.keys()]) this.load(name)
    const records = [...super.entries()]
    const position = new Map(this.order.map((n, i) => [n, i]))
    const rank = (n: string) => position.get(n) ?? Number.MAX_SAFE_INTEGER
    records.sort(([a], [b]) => rank(a) - rank(b))
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
