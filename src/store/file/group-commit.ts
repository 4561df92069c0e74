import * as fs from 'node:fs'
import {dirname} from 'node:path'
import {type Doc, isEmptyRecord, STORE_VERSION, type UserRecord} from '../../core/model.js'
import {checkStoreDir, ensureDir, lstatPrivate, openPrivate} from '../../os/files.js'
import {KeyFiles} from '../keys.js'
import {batchedLogins, type LoginOutcome, type PendingLogin} from '../responder.js'
import {decodeUserText, type Decoded, type HotState, hotStateOf} from '../sealed.js'
import {type LineIndex, splitStore} from './codec.js'
import {entryLine, JournalText, parseJournal, resetJournal, shouldCompact} from './journal.js'
import {withLock} from './lock.js'
import type {Store} from './store.js'

/**
 * Group commit of a responder's logins (radius:serve) behind the seam's `login(user, fn)`.
 *
 * Logins that arrive while a commit is in progress form the next batch. Per batch: the store lock
 * is taken once; what this process already knows (the store's header and the records it decoded,
 * the journal's entries) is checked against the files by fstat identity — the store's
 * dev/ino/size/mtime/ctime, the journal's dev/ino and size — so only the journal's tail appended
 * by another process is read, or the store again when it was rewritten; each login is decided in
 * arrival order on that state (the same user twice in one batch: the second sees the first's
 * effect); every changed state goes out in ONE append and ONE fsync; the lock is released; only
 * then are the logins answered, so no Accept leaves before its state is on disk.
 *
 * What this path does not handle — no store or no journal epoch yet, a store not in the line
 * layout, a record to create, a pam_oath users file to keep in step, any error — goes, from that
 * login on, through the store's own per-login path (Store.login), after the lock is released:
 * it gives the same answers, errors and fail-closed behaviour as a single login:check.
 *
 * The files of the version known are kept open, so their inode numbers cannot be reused by a
 * later version (an identity that matched by chance). Between batches, the records of the version
 * known are decoded ahead (preload), a slice a turn, so that logins find them open.
 */

/** Decoded records kept at most (a record with its opened secret is a few hundred bytes to a few kilobytes). */
const MAX_RECORDS = 50_000
/** Decoding ahead takes this long a turn of the event loop at most (a record takes about 10 µs): requests wait no longer. */
const PRELOAD_SLICE_MS = 2

/** What fstat says identifies one version of a file. */
type Identity = Pick<fs.BigIntStats, 'dev' | 'ino' | 'size' | 'mtimeNs' | 'ctimeNs'>
const identity = (st: fs.BigIntStats): Identity => ({dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs})
const sameVersion = (a: Identity, b: Identity): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs

/** The store as last read: its header, its user lines (bytes) and the records decoded from them, journal applied. */
interface KnownStore {
  fd: number
  id: Identity
  header: Decoded
  epoch: string
  lines: LineIndex
  /** Decoded records with every journal entry read so far applied (an emptied one stays, empty); null: no line in the store. */
  records: Map<string, UserRecord | null>
}

/** The journal as last read: the file (kept open, for appends too) and how far it was read. */
interface KnownJournal {
  fd: number
  dev: bigint
  ino: bigint
  /** Bytes read (and appended) so far. */
  size: number
  /** Whether it belongs to the known store's epoch (else the next append starts it anew). */
  current: boolean
}

/** A decision waiting for its state to be on disk (or the decision's own error, given after the lock is released too). */
interface Decided {
  login: PendingLogin
  result?: unknown
  error?: unknown
}

/**
 * What a login may change in a record (its hot state), cheap to take and compare: the scalars as
 * they are, the two objects as JSON (they are null for most users). Equal keys: nothing to append.
 */
type HotKey = [number | null, string | null, number | undefined, number, string | null, string | null, string | null]
const hotKey = (u: UserRecord): HotKey => [
  u.lastUsedStep,
  u.lastUsedAt,
  u.driftSteps,
  u.failures,
  u.lockedUntil,
  u.recovery && JSON.stringify(u.recovery),
  u.bypass && JSON.stringify(u.bypass),
]
const sameHotKey = (a: HotKey, b: HotKey): boolean => a.every((v, i) => v === b[i])

export class GroupCommit {
  /**
   * One batch at a time (one lock): the logins that arrive while a batch is committed, and those
   * of one turn of the event loop, form the next. No bound here: a login waits for the lock as
   * every command does.
   */
  private readonly batches = batchedLogins((batch) => this.runBatch(batch), {
    concurrency: 1,
    maxBatch: Number.POSITIVE_INFINITY,
    boundMs: Number.POSITIVE_INFINITY,
    late: () => new Error('unreachable: logins have no deadline here'),
  })
  private store?: KnownStore
  private journal?: KnownJournal
  /** The journal's live content: the newest entry line per user (what a compaction keeps). */
  private readonly newest = new JournalText()
  /** The newest journal state of users whose record is not decoded yet. */
  private readonly undecoded = new Map<string, HotState>()
  private readonly keys: KeyFiles
  /** Counters (for a look in a debugger, a profile or a test): batches committed, logins sent the per-login way, compactions, records decoded ahead. */
  readonly stats = {batches: 0, single: 0, compactions: 0, preloaded: 0}
  /** Preloads started (the newest one goes on, any other stops). */
  private preloads = 0

  constructor(
    private readonly file: Store,
    private readonly maxRecords = MAX_RECORDS,
  ) {
    this.keys = new KeyFiles(file.files.key, file.files.legacyKey, {storeDirChecked: true}) // the directory is checked before every batch
  }

  /** The seam's login: resolved once the login's effect is on disk (or it had none). */
  login<T>(user: string, fn: (doc: Doc) => T): Promise<T> {
    return this.batches.login(user, fn)
  }

  /** One batch: committed together under the lock, then what this path could not take, one login at a time the per-login way, in order. */
  private async runBatch(batch: PendingLogin[]): Promise<LoginOutcome[]> {
    const outcomes = new Map<PendingLogin, LoginOutcome>()
    const {decided, rest} = await this.commit(batch)
    for (const d of decided) outcomes.set(d.login, 'error' in d ? {error: d.error} : {value: d.result})
    for (const w of rest) {
      this.stats.single++
      try {
        outcomes.set(w, {value: await this.file.login(w.user, w.fn)})
      } catch (error) {
        outcomes.set(w, {error})
      }
    }
    return batch.map((w) => outcomes.get(w)!)
  }

  /** One batch under the lock: the decisions whose state is on disk (or their own errors), and the logins left to the per-login path, in order. */
  private async commit(batch: PendingLogin[]): Promise<{decided: Decided[]; rest: PendingLogin[]}> {
    let decided: Decided[] = []
    let rest: PendingLogin[] = batch
    try {
      checkStoreDir(dirname(this.file.path)) // an untrusted directory is never read
      ensureDir(dirname(this.file.path))
      await withLock(this.file.files.lock, async () => {
        if (!this.refreshStore() || !this.refreshJournal()) return
        const out = this.decide(batch)
        decided = out.decided
        rest = out.rest
        await this.append(out.lines)
        if (out.stale) this.forget()
      })
    } catch {
      this.forget() // whatever happened, nothing known is trusted any more
      decided = []
      rest = batch // the per-login path gives this batch its answers (and its errors: fail closed)
    }
    if (decided.length > 0) this.stats.batches++
    return {decided, rest}
  }

  /**
   * Decides each login in arrival order on the known state, changing it in place. A login this
   * path cannot take ends the batch: it and the ones after it go the per-login way.
   */
  private decide(batch: PendingLogin[]): {decided: Decided[]; rest: PendingLogin[]; lines: string[]; stale?: boolean} {
    const store = this.store!
    const settings = store.header.doc.settings
    const decided: Decided[] = []
    const lines: string[] = []
    for (const [i, login] of batch.entries()) {
      const record = this.record(login.user)
      // a users file to keep in step (oathfile/sync.ts LoginSync): the per-login path does it
      if (settings.oathFile && record?.secret) return {decided, rest: batch.slice(i), lines}
      const doc: Doc = {version: STORE_VERSION, settings, users: new Map(record ? [[login.user, record]] : [])}
      const before = record && hotKey(record)
      let result: unknown
      try {
        result = login.fn(doc)
      } catch (error) {
        // the decision's own error, as Store.login gives it: nothing of it is stored, and the
        // record it may have half changed is read again (from the next batch on)
        decided.push({login, error})
        return {decided, rest: batch.slice(i + 1), lines, stale: true}
      }
      if (!record) {
        if (doc.users.has(login.user)) return {decided, rest: batch.slice(i), lines} // a record to create: the full update
        decided.push({login, result})
        continue
      }
      // fn changes the record in place (even when it drops it: kept, empty)
      if (!sameHotKey(hotKey(record), before!)) {
        const line = entryLine(login.user, hotStateOf(record))
        lines.push(line)
        this.newest.set(login.user, line)
      }
      decided.push({login, result})
    }
    return {decided, rest: [], lines}
  }

  /**
   * A user's record as the files say now (decoded once, then kept up to date); undefined when
   * there is none or the journal emptied it (as a full read drops it).
   */
  private record(user: string): UserRecord | undefined {
    const store = this.store!
    let record = store.records.get(user)
    if (record === undefined) {
      record = null
      const i = findLine(store.lines, user) // the lines were checked whole (splitStore): a miss is a miss
      if (i >= 0) {
        const {buf, nameEnds, ends} = store.lines
        const text = buf.toString('utf8', nameEnds[i] + 2, ends[i]) // after `"name":`
        record = decodeUserText(user, text, this.file.path, store.header, this.keys)
        Object.assign(record, this.undecoded.get(user))
      }
      this.undecoded.delete(user)
      if (store.records.size >= this.maxRecords) this.evict(store)
      store.records.set(user, record)
    }
    return record && !isEmptyRecord(record) ? record : undefined
  }

  /**
   * Decodes the store's records ahead of their logins, a slice at a time between requests, up to
   * the records kept (as FreeRADIUS holds its users in memory from the start): a burst of logins
   * then finds them decoded, instead of opening each user's secret (JSON, checks, AES-GCM) on the
   * login path. The same decoding as a login's (record()), on the version known, with the
   * journal's state applied; it stops when that version is replaced (the next one starts its own)
   * and at the first record that cannot be decoded (its login reports it, the per-login way).
   */
  private preload(store: KnownStore): void {
    const run = ++this.preloads
    let i = 0
    const slice = () => {
      if (this.store !== store || this.preloads !== run) return // another version, or a new start on this one
      const until = performance.now() + PRELOAD_SLICE_MS
      try {
        for (let n = 0; i < store.lines.count && store.records.size < this.maxRecords; i++, n++) {
          if (n % 16 === 0 && performance.now() > until) break
          if (this.record(store.lines.name(i))) this.stats.preloaded++
        }
      } catch {
        return
      }
      if (i < store.lines.count && store.records.size < this.maxRecords) setImmediate(slice)
    }
    setImmediate(slice)
  }

  /**
   * Drops the records decoded longest ago (a tenth of them), keeping the state the journal gave
   * them for when they are decoded again: memory stays bounded on a store of many users.
   */
  private evict(store: KnownStore): void {
    let n = Math.ceil(this.maxRecords / 10)
    for (const [user, record] of store.records) {
      if (n-- <= 0) break
      if (record) this.undecoded.set(user, hotStateOf(record))
      store.records.delete(user)
    }
  }

  /**
   * The store as it is now: kept when the file is the version known, read again (header checked,
   * lines split and their digest checked) when it was replaced. False when this path cannot take
   * the store (none yet, no journal epoch, not in the line layout).
   */
  private refreshStore(): boolean {
    // The path still names the file held open, unchanged (its inode cannot be reused while it is
    // held): nothing to open. Anything else (another file, a link, a change of mode or owner,
    // which moves ctime) is opened and judged again.
    if (this.store && sameFile(this.file.path, this.store.id)) return true
    const fd = openPrivate(this.file.path, fs.constants.O_RDONLY) // judged by what was opened
    if (fd === undefined) {
      this.forget()
      return false
    }
    const id = identity(fs.fstatSync(fd, {bigint: true}))
    if (this.store && sameVersion(this.store.id, id)) {
      fs.closeSync(fd)
      return true
    }
    this.forget()
    try {
      this.keys.forget() // a rewrite may come with a new key (a rotation)
      const raw = fs.readFileSync(fd)
      if (BigInt(raw.length) !== id.size) return false // changed while read: not tfactl's way of writing it
      const split = splitStore(raw, this.file.path, this.keys)
      if (!split || split.header.epoch === null) return false
      this.store = {fd, id, header: split.header, epoch: split.header.epoch, lines: split.lines, records: new Map()} // decoded ahead from the journal's first read on (refreshJournal)
      return true
    } finally {
      if (this.store?.fd !== fd) fs.closeSync(fd)
    }
  }

  /** The journal as it is now: only the tail appended since it was last read, unless it was replaced (compacted, reset). */
  private refreshJournal(): boolean {
    const store = this.store!
    const path = this.file.files.journal
    const known = this.journal
    if (known && known.fd >= 0) {
      // the path still names the journal held open (grown, if another process appended): its tail
      const st = lstatPrivate(path)
      const size = Number(st?.size ?? 0)
      if (st && st.dev === known.dev && st.ino === known.ino && size >= known.size) {
        if (size > known.size && known.current) this.apply(parseJournal(readAt(known.fd, known.size, size - known.size), path).entries)
        known.size = size
        return true
      }
    }
    const fd = openPrivate(path, fs.constants.O_RDWR | fs.constants.O_APPEND)
    const st = fd === undefined ? undefined : fs.fstatSync(fd, {bigint: true})
    const size = Number(st?.size ?? 0)
    if (fd === undefined && known?.fd === -1) return true // still none
    // Another file (compacted or reset by another process, removed, or the first read): what was
    // known of the journal goes, the records back to the store's text, and the file is read whole.
    this.dropJournal()
    store.records.clear()
    this.undecoded.clear()
    this.newest.clear()
    this.preload(store) // the records go back to the store's text (a new store, or a new journal): decoded ahead
    if (fd === undefined || !st) {
      this.journal = {fd: -1, dev: -1n, ino: -1n, size: 0, current: false}
      return true
    }
    this.journal = {fd, dev: st.dev, ino: st.ino, size, current: false}
    const whole = parseJournal(readAt(fd, 0, size), path, store.epoch)
    this.journal.current = whole.current
    if (whole.current) this.apply(whole.entries, whole.lines)
    return true
  }

  /** Entries read from the journal (newest last): onto decoded records, or kept for when they are decoded. */
  private apply(entries: Map<string, HotState>, lines?: Map<string, string>): void {
    const store = this.store!
    for (const [user, state] of entries) {
      const record = store.records.get(user)
      if (record)
        Object.assign(record, state) // the newest state on the file's record, as a full read applies it
      else if (record === undefined) this.undecoded.set(user, state) // null: no line in the store, nothing to apply to
      this.newest.set(user, lines?.get(user) ?? entryLine(user, state))
    }
  }

  /**
   * The batch's entries in one append and one fsync (starting the journal for this epoch when it
   * is not current); then a compaction when the journal has grown past twice its live content.
   */
  private async append(lines: string[]): Promise<void> {
    if (lines.length === 0) return
    const store = this.store!
    const path = this.file.files.journal
    if (!this.journal?.current) {
      resetJournal(path, store.epoch)
      this.dropJournal()
      const fd = openPrivate(path, fs.constants.O_RDWR | fs.constants.O_APPEND)!
      const st = fs.fstatSync(fd, {bigint: true})
      this.journal = {fd, dev: st.dev, ino: st.ino, size: Number(st.size), current: true}
    }
    const journal = this.journal
    const text = Buffer.from(lines.join(''))
    for (let done = 0; done < text.length; ) done += fs.writeSync(journal.fd, text, done)
    await new Promise<void>((resolve, reject) => fs.fsync(journal.fd, (error) => (error ? reject(error) : resolve()))) // off the event loop: requests keep being read
    journal.size = Number(fs.fstatSync(journal.fd).size)
    if (shouldCompact(journal.size, this.newest.bytes)) await this.compact()
  }

  /** Rewrites the journal with its live content (atomically); folds it into the store when even that is large. */
  private async compact(): Promise<void> {
    const store = this.store!
    const path = this.file.files.journal
    this.stats.compactions++
    const size = this.newest.write(path, store.epoch)
    this.dropJournal()
    const fd = openPrivate(path, fs.constants.O_RDWR | fs.constants.O_APPEND)!
    const st = fs.fstatSync(fd, {bigint: true})
    this.journal = {fd, dev: st.dev, ino: st.ino, size: Number(st.size), current: true}
    if (size > this.file.foldAt) {
      await this.file.foldJournal() // the store is rewritten with a new, empty journal: read again next batch
      this.forget()
    }
  }

  private dropJournal(): void {
    if (this.journal && this.journal.fd >= 0) fs.closeSync(this.journal.fd)
    this.journal = undefined
  }

  /** Drops everything known: the next batch reads the files again. */
  private forget(): void {
    this.dropJournal()
    if (this.store) fs.closeSync(this.store.fd)
    this.store = undefined
    this.undecoded.clear()
    this.newest.clear()
  }
}

/** Whether `path` names, without a link, a private regular file of this identity (the version held open). */
function sameFile(path: string, id: Identity): boolean {
  const st = lstatPrivate(path)
  return st !== undefined && sameVersion(id, identity(st))
}

/** Binary search of the sorted names of a store's lines. */
function findLine(lines: LineIndex, name: string): number {
  let lo = 0
  let hi = lines.count - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const found = lines.name(mid) // made when asked for (codec.ts lineIndex)
    if (found === name) return mid
    if (found < name) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

function readAt(fd: number, position: number, length: number): string {
  const buf = Buffer.allocUnsafe(length)
  let done = 0
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done)
    if (n === 0) break
    done += n
  }
  return buf.toString('utf8', 0, done)
}
