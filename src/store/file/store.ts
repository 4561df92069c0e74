import {Low} from 'lowdb'
import {dirname} from 'node:path'
import {EXIT, TfaError} from '../../core/errors.js'
import {type Doc, emptyDoc, isEmptyRecord, newUserRecord, type Settings, type UserRecord} from '../../core/model.js'
import {decodeStore, decodeUserText, type HotState, hotStateOf, KeyMissing} from '../sealed.js'
import {countLines, decodeHeader, decodeOneUser, encodeStore, newEpoch, splitStore} from './codec.js'
import {atomicWrite, checkPrivateFile, checkStoreDir, ensureDir, readPrivateFile, readPrivateFileAt, removeStaleTemps} from '../../os/files.js'
import {appendJournal, compactJournal, entryLine, type Journal, readJournal, resetJournal, shouldCompact} from './journal.js'
import {KeyFiles} from '../keys.js'
import {withLock} from './lock.js'
import {auditedUsers, type ChangeSet, changeSet, projectUpdate} from '../change.js'
import {usersFileProjection} from '../oathfile/projection.js'
import {LoginSync, type SyncReport} from '../oathfile/sync.js'
import {StoredUsers} from './records.js'
import {sidecars} from '../paths.js'
import {checkNotLost} from './lost.js'
import {disabledView} from './header.js'

/** Applies a journal's newest hot state to the records it names; records left empty go. */
export function overlay(doc: Doc, entries: Map<string, HotState>): void {
  for (const [user, state] of entries) {
    const record = doc.users.get(user)
    if (!record) continue
    Object.assign(record, state)
    if (isEmptyRecord(record)) doc.users.delete(user)
  }
}

/**
 * An error about a bad store says where the previous valid one is, when there is one, and how to
 * put it back (a missing key: no help there, the backup needs it too). The error given is always the one returned: a backup that cannot be checked only
 * goes unmentioned.
 */
export function withBackupNote(error: unknown, backup: string): unknown {
  try {
    if (error instanceof TfaError && !(error instanceof KeyMissing) && error.exit === EXIT.store && checkPrivateFile(backup))
      error.message += ` (the previous valid store is kept in ${backup}: put it back with tfactl store:restore, or get 2FA off anyway with tfactl twofactor:disable --force)`
  } catch {
    // an unusable backup (a link, another owner): no note, and the original error stands
  }
  return error
}

/**
 * lowdb adapter: validated reads with the hot-state journal applied; atomic 0600 writes that
 * keep the previous store as `.bak` and start a new journal.
 *
 * A full read (`lazy` false: store:check, user:list…) decodes and validates every record. The
 * update path reads lazily (records.ts): a record is decoded when the update reads it, and the
 * lines of records it never read are written back as they are.
 */
class StoreFile {
  /** The key id the file on disk names (null: no secrets sealed yet). */
  keyId: string | null = null
  /** The file's journal epoch (null: none yet); after a write, the new one. */
  epoch: string | null = null
  /** The mark of the pam_oath users file written with this store (its digest: oathfile/projection.ts). */
  oath: string | null = null
  constructor(
    readonly path: string,
    private readonly keys: KeyFiles,
    private readonly lazy = false,
  ) {}

  async read(): Promise<Doc | null> {
    for (let attempt = 1; ; attempt++) {
      const raw = readPrivateFile(this.path)
      if (raw === undefined) {
        checkNotLost(this.path) // a lost store is not a new one (exit 3)
        return this.lazy ? {...emptyDoc(), users: StoredUsers.fromDecoded(new Map())} : null
      }
      try {
        return this.decode(raw)
      } catch (error) {
        // Read without the lock, the store may have been replaced (a key rotation) between
        // reading it and reading its key: read again what is there now.
        const now = readPrivateFile(this.path)
        if (attempt < 3 && now && !now.equals(raw)) {
          this.keys.forget()
          continue
        }
        throw error
      }
    }
  }

  private decode(raw: Buffer): Doc {
    try {
      const lines = this.lazy ? splitStore(raw, this.path, this.keys) : undefined
      const decoded = lines?.header ?? decodeStore(raw.toString('utf8'), this.path, this.keys)
      Object.assign(this, {keyId: decoded.keyId, epoch: decoded.epoch, oath: decoded.oath})
      const journal = readJournal(sidecars(this.path).journal, decoded.epoch).entries
      if (!this.lazy) {
        overlay(decoded.doc, journal)
        return decoded.doc
      }
      const users = lines
        ? StoredUsers.fromLines(lines.lines, (name, record, opened) => decodeUserText(name, record, this.path, decoded, this.keys, opened), this.path)
        : StoredUsers.fromDecoded(decoded.doc.users)
      users.applyJournal(journal)
      return {...decoded.doc, users}
    } catch (error) {
      throw withBackupNote(error, sidecars(this.path).backup)
    }
  }

  async write(doc: Doc): Promise<void> {
    const epoch = newEpoch()
    const {data, keyId} =
      doc.users instanceof StoredUsers
        ? doc.users.encode(doc.settings, this.keys, this.keyId, epoch, this.oath)
        : (({text, keyId}) => ({data: text, keyId}))(encodeStore(doc, this.keys, epoch, this.oath))
    atomicWrite(this.path, data, sidecars(this.path).backup)
    resetJournal(sidecars(this.path).journal, epoch) // a crash before this leaves a journal of the old epoch: ignored
    this.keyId = keyId
    this.epoch = epoch
  }
}

/** A record's hot state when nothing happened to it yet. */
const NO_HOT_STATE = hotStateOf(newUserRecord())

/** Past twice its live content the journal is compacted (journal.ts shouldCompact); if it stays past JOURNAL_FOLD, it is folded in. */
const JOURNAL_FOLD = 8 << 20
/** Records per batch when every user is read in turn (user:list). */
const USER_BATCH = 2000

export class Store {
  readonly files: ReturnType<typeof sidecars>
  private readonly keys: KeyFiles
  /** What the last update did to the pam_oath users file (undefined: none is configured). */
  oathSync: SyncReport | undefined
  /** What the last update changed. */
  lastChange: ChangeSet | undefined
  constructor(readonly path: string) {
    this.files = sidecars(path)
    this.keys = new KeyFiles(this.files.key, this.files.legacyKey, {storeDirChecked: true}) // every method below checks the directory first
  }

  /** The current state. No lock needed: the file is only ever replaced whole, by rename. */
  async read(): Promise<Doc> {
    checkStoreDir(dirname(this.path))
    const db = new Low<Doc>(new StoreFile(this.path, this.keys), emptyDoc())
    await db.read()
    return db.data
  }

  /**
   * Read-modify-write under the store lock. `fn` mutates the document; it is written (once,
   * atomically) only when something changed. An error thrown by `fn` writes nothing.
   * The update yields its change set (the users whose records it changed, the settings before
   * and after); the pam_oath users file is a projection of it (../change.ts, ../oathfile/).
   * `audit`, when given, hears the users an update that wrote a change touched (auditedUsers),
   * once the store is saved and before the lock is released.
   */
  async update<T>(fn: (doc: Doc) => T | Promise<T>, audit?: (users: string[]) => void): Promise<T> {
    return this.locked((db) => this.apply(db, fn, audit))
  }

  private async apply<T>(db: Low<Doc>, fn: (doc: Doc) => T | Promise<T>, audit?: (users: string[]) => void): Promise<T> {
    const file = db.adapter as StoreFile
    const users = db.data.users as StoredUsers // the update path reads lazily (lockedFull)
    const before = {...db.data.settings}
    const settings = JSON.stringify(before)
    const oath = file.oath
    const f = this.files
    const own = [
      this.path,
      f.lock,
      f.backup,
      f.journal,
      f.key,
      `${f.key}.next`,
      f.audit,
      `${f.audit}.lost`,
      f.oathStamp,
      f.legacyKey,
      `${f.legacyKey}.next`,
      f.legacyAudit,
    ]
    const view = {mark: oath, onLoad: users.onLoad.bind(users), protect: own, note: f.oathStamp}
    // Records the users file changed before `fn` (its replay state), as they were then: not the update's doing.
    let aside = new Map<string, string>()
    let committed: ChangeSet | undefined
    const {result, change, report} = await projectUpdate(db.data, usersFileProjection, view, {
      run: async () => {
        if (audit) aside = new Map([...users.changedUsers()].map((name) => [name, JSON.stringify(users.get(name) ?? null)]))
        return fn(db.data)
      },
      change: () => (committed = changeSet(users.changedUsers(), before, db.data)),
      // Written only when something changed: what the update set, deleted or changed (records.ts),
      // the settings, or the users file's mark. The audit lines follow the saved store, under the lock.
      save: async (mark) => {
        if (mark !== undefined) file.oath = mark
        if (!(users.changed() || JSON.stringify(db.data.settings) !== settings || file.oath !== oath)) return
        await db.write()
        const touched = audit && auditedUsers(committed!, (name) => aside.get(name) === JSON.stringify(users.get(name) ?? null))
        if (touched) audit!(touched)
      },
    })
    this.oathSync = report
    this.lastChange = change
    return result
  }

  /**
   * An update that only changes one user's hot state (a login): under the same lock, it reads
   * that user's line alone and appends the outcome to the journal, so its cost does not grow
   * with the number of users. With a users file, only that user's line in it is read and, when
   * the login changed it, replaced (oathfile/sync.ts LoginSync). Anything else (no journal yet,
   * a users file that lacks the user's line, a record to create, a store not in tfactl's
   * layout) takes the full update path.
   */
  async login<T>(user: string, fn: (doc: Doc) => T): Promise<T> {
    checkStoreDir(dirname(this.path)) // an untrusted directory is never read, not even for its settings
    try {
      return await this.loginLocked(user, fn)
    } catch (error) {
      const off = disabledView(error, this.path) // 2FA off, records unreadable (no key): the decision needs none
      if (off) return fn(off)
      throw error
    }
  }

  private async loginLocked<T>(user: string, fn: (doc: Doc) => T): Promise<T> {
    ensureDir(dirname(this.path))
    return withLock(this.files.lock, async () => {
      let one
      try {
        one = readPrivateFileAt(this.path, (src) => decodeOneUser(src, user, this.path, this.keys))
      } catch (error) {
        throw withBackupNote(error, this.files.backup)
      }
      if (!one || one.epoch === null) return this.lockedFull((db) => this.apply(db, fn))
      const journal = readJournal(this.files.journal, one.epoch, new Set([user]))
      overlay(one.doc, journal.entries)
      const record = one.doc.users.get(user)
      const oath = await LoginSync.open(one.doc, user)
      if (oath === 'full') return this.lockedFull((db) => this.apply(db, fn))
      try {
        const before = record && JSON.stringify(hotStateOf(record))
        oath?.importReplay(one.doc)
        const result = fn(one.doc)
        if (!record) return one.doc.users.has(user) ? this.lockedFull((db) => this.apply(db, fn)) : result // no users file session without a record
        const state = hotStateOf(record) // fn changes the record in place (even when it drops it)
        if (JSON.stringify(state) !== before) await this.record(journal, one.epoch, user, state)
        if (oath) this.oathSync = await oath.finish(one.doc)
        return result
      } finally {
        oath?.release()
      }
    })
  }

  /**
   * A change of one user (the seam's updateUser): under the store lock, that user's line alone is
   * read, as for a login. When `fn` changes nothing, or only the record's hot state (failures,
   * lockout, recovery and bypass codes: what a login changes), that is all: the state goes to the
   * journal as a login's does, and the 31 MB of a 100 000-user store are neither read nor written.
   * Anything else — a record created, deleted or otherwise changed, another user, the settings, a
   * users file to keep in step, a store not in the line layout — runs `fn` again, on the full
   * update path (`fn` changes only the document it is given, so running it twice is safe).
   * `audit` as for update(): it hears the user once the change is stored, under the lock.
   */
  async updateOne<T>(user: string, fn: (doc: Doc) => T | Promise<T>, audit?: (users: string[]) => void): Promise<T> {
    checkStoreDir(dirname(this.path))
    ensureDir(dirname(this.path))
    return withLock(this.files.lock, async () => {
      const full = () => this.lockedFull((db) => this.apply(db, fn, audit))
      let one
      try {
        one = readPrivateFileAt(this.path, (src) => decodeOneUser(src, user, this.path, this.keys))
      } catch (error) {
        throw withBackupNote(error, this.files.backup)
      }
      if (!one || one.epoch === null || one.doc.settings.oathFile !== null) return full()
      const journal = readJournal(this.files.journal, one.epoch, new Set([user]))
      overlay(one.doc, journal.entries)
      const record = one.doc.users.get(user)
      const settings = {...one.doc.settings}
      const cold = (r: UserRecord) => JSON.stringify({...r, ...NO_HOT_STATE}) // the record but its hot state
      const before = record && {cold: cold(record), hot: JSON.stringify(hotStateOf(record))}
      const result = await fn(one.doc)
      const after = one.doc.users.get(user)
      const alone = one.doc.users.size === (after ? 1 : 0) && JSON.stringify(one.doc.settings) === JSON.stringify(settings)
      if (!alone || after !== record || (after && (cold(after) !== before!.cold || isEmptyRecord(after)))) return full()
      const hot = after !== undefined && JSON.stringify(hotStateOf(after)) !== before!.hot
      if (hot) await this.record(journal, one.epoch, user, hotStateOf(after))
      if (hot) audit?.([user]) // journaled: audited before the lock is released
      this.oathSync = undefined // no users file is configured
      this.lastChange = changeSet(hot ? [user] : [], settings, one.doc)
      return result
    })
  }

  /** The settings alone (the header line), validated; defaults when there is no store yet. */
  async settings(): Promise<Settings> {
    checkStoreDir(dirname(this.path))
    let header
    try {
      header = readPrivateFileAt(this.path, (src) => decodeHeader(src, this.path, this.keys) ?? null) // null: not in the line layout
    } catch (error) {
      throw withBackupNote(error, this.files.backup)
    }
    return header === undefined ? emptyDoc().settings : header === null ? (await this.read()).settings : header.doc.settings
  }

  /**
   * The settings and how many users there are and have a secret, without decoding the records:
   * the counts come from the lines (records the journal empties aside, which are looked at).
   * A store not in tfactl's layout is read whole.
   */
  async summary(): Promise<{settings: Settings; total: number; configured: number}> {
    checkStoreDir(dirname(this.path))
    const raw = readPrivateFile(this.path)
    if (raw === undefined) {
      checkNotLost(this.path) // a lost store is not a new one (exit 3)
      return {settings: emptyDoc().settings, total: 0, configured: 0}
    }
    let counts
    try {
      counts = countLines(raw, this.path, this.keys)
    } catch (error) {
      throw withBackupNote(error, this.files.backup)
    }
    if (!counts) {
      const doc = await this.read()
      return {settings: doc.settings, total: doc.users.size, configured: [...doc.users.values()].filter((u) => u.secret).length}
    }
    // A record without a secret goes when the journal leaves nothing in it (as a full read drops it).
    let total = counts.total
    for (const [user, state] of readJournal(this.files.journal, counts.header.epoch).entries) {
      const text = counts.noSecret.get(user)
      if (text !== undefined && isEmptyRecord({...JSON.parse(text), ...state})) total--
    }
    return {settings: counts.header.doc.settings, total, configured: counts.secrets}
  }

  /**
   * Every user in name order, USER_BATCH at a time, decoded (validated, opened) line by line with
   * the journal applied; a batch's records are dropped once handed over (user:list). A store not
   * in tfactl's layout is read whole.
   */
  async eachUser(fn: (batch: Array<[string, UserRecord]>) => void): Promise<void> {
    checkStoreDir(dirname(this.path))
    const raw = readPrivateFile(this.path)
    if (raw === undefined) return checkNotLost(this.path) // a lost store is not a new one (exit 3)
    try {
      const split = splitStore(raw, this.path, this.keys)
      if (!split) return fn([...(await this.read()).users])
      const journal = readJournal(this.files.journal, split.header.epoch).entries
      const {buf, count, nameEnds, ends} = split.lines
      let batch: Array<[string, UserRecord]> = []
      for (let i = 0; i < count; i++) {
        const name = split.lines.name(i)
        const text = buf.toString('utf8', nameEnds[i] + 2, ends[i]) // after `"name":`
        const record = decodeUserText(name, text, this.path, split.header, this.keys, new Map())
        Object.assign(record, journal.get(name))
        if (isEmptyRecord(record)) continue // as a full read drops it
        batch.push([name, record])
        if (batch.length === USER_BATCH) {
          fn(batch)
          batch = []
        }
      }
      if (batch.length > 0) fn(batch)
    } catch (error) {
      throw withBackupNote(error, this.path)
    }
  }

  /** Appends to the journal; keeps it small by compacting it, and folding it into the store. */
  private async record(journal: Journal, epoch: string, user: string, state: HotState): Promise<void> {
    const size = appendJournal(this.files.journal, journal, epoch, user, state)
    if (shouldCompact(size, journal.live + entryLine(user, state).length) && compactJournal(this.files.journal, epoch) > JOURNAL_FOLD) await this.foldJournal()
  }

  /** A compacted journal past this size is folded into the store. */
  readonly foldAt = JOURNAL_FOLD

  /** Folds the journal into the store (a full write, which starts a new journal). Call under the store lock. */
  foldJournal(): Promise<void> {
    return this.lockedFull((db) => db.write())
  }

  /** Seals every secret under a new key; the old key stays valid until the new store is in place. */
  async rotateKey(): Promise<{users: string[]}> {
    return this.locked(async (db) => {
      this.keys.prepareNext()
      await db.write()
      this.keys.settle((db.adapter as StoreFile).keyId)
      // The old key is gone: a backup sealed with it could not be restored. The rotation changed
      // no data, so a copy of the rotated store is the backup.
      atomicWrite(this.files.backup, readPrivateFile(this.path)!)
      return {users: [...db.data.users].filter(([, u]) => u.secret || u.pending).map(([name]) => name)}
    })
  }

  private async locked<T>(fn: (db: Low<Doc>) => Promise<T>): Promise<T> {
    checkStoreDir(dirname(this.path))
    ensureDir(dirname(this.path))
    return withLock(this.files.lock, () => this.lockedFull(fn))
  }

  /** The full read of the store (journal applied), for a caller that holds the lock. */
  private async lockedFull<T>(fn: (db: Low<Doc>) => Promise<T>): Promise<T> {
    for (const file of [this.path, this.files.backup, this.files.key, this.keys.next, this.files.journal]) removeStaleTemps(file)
    const file = new StoreFile(this.path, this.keys, true)
    const db = new Low<Doc>(file, emptyDoc())
    await db.read()
    this.keys.settle(file.keyId) // finishes or drops a rotation a crash interrupted
    return fn(db)
  }
}
