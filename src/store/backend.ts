import type {Doc, Settings, StatusSummary, UserRecord} from '../core/model.js'
import type {AuditEvent, ChangeAudit} from './audit.js'
import type {ChangeSet} from './change.js'
import type {UsersFile} from './oathfile/file.js'
import type {SyncReport} from './oathfile/sync.js'

export type {ChangeSet} from './change.js'
export type {ChangeAudit} from './audit.js'

/** What a run did, as the audit trail records it (never a secret or a code). */
export interface Outcome {
  outcome: string
  reason: string | null
}

/** What a run's updates audited as they committed (StoreBackend.changeAudited). */
export interface AuditedChanges extends Outcome {
  users: ReadonlySet<string>
}

/** The audit record of `users` added to what a run's updates audited before (`done`). */
export const auditedMore = (done: AuditedChanges | undefined, users: readonly string[], outcome: Outcome): AuditedChanges => ({
  ...outcome,
  users: new Set([...(done?.users ?? []), ...users]),
})

/** An audit event decided elsewhere (radius:serve): its own time, and the RADIUS client's address. */
export interface AuditRecord {
  time: string
  command: string
  user: string | null
  outcome: string
  reason: string | null
  client?: string
}

/** One line of `doctor`'s report about the store. */
export interface StoreFinding {
  check: string
  status: 'ok' | 'finding' | 'unknown' | 'skipped'
  message: string
  /** The one command that gets out of a broken state (docs/emergency.md), where there is one. */
  fix?: string
}

/** `store:check`'s answer (the same fields for every backend). */
export interface StoreCheck {
  path: string
  valid: true
  exists: boolean
  version: number
  users: number
  schema?: number
  keyId?: string | null
}

/** An audit trail for a long-running process (radius:serve): events go out in batches, in order; a failure is reported through `warn`, never fatal. */
export interface AuditSink {
  record(event: Omit<AuditRecord, 'time'>): void
  /** Resolves when every recorded event has been written (or has failed to be). */
  drain(): Promise<void>
}

/**
 * What a responder that checks many logins at once needs from a store: `login` as this backend
 * wants it called concurrently (a file store queues them behind its one lock, a database runs
 * them side by side), and its audit sink.
 */
export interface Responder {
  login: StoreBackend['login']
  audit: AuditSink
  /** Optional capability: the database pool's connections checked out and callers waiting for one (metrics). */
  pool?: () => {inUse: number; waiting: number}
}

/** `store:restore`'s report. */
export interface RestoreReport {
  restored: true
  from: string
  movedAside: string[]
  /** Users whose secrets the backup holds but the current key cannot open. */
  undecryptable: string[]
  users: number
  enabled: boolean
  warnings: string[]
}

/** `twofactor:disable --force`'s report. */
export interface ForceReport {
  changed: boolean
  movedAside: string[]
  /** The pam_oath users file, rewritten listing nobody; `savedCopy`: its lines before, when records were lost. */
  usersFile: {path: string; changed: boolean; users: string[]; savedCopy?: string} | null
  removedLocks: string[]
  warnings: string[]
  /** Where the settings of the new store came from. */
  settingsFrom: 'store' | 'backup' | 'defaults'
  /** Users whose records could not be read (kept only in the files moved aside). */
  unreadable: string[]
}

/**
 * Repairs only a store the tool keeps itself can have (the file store): a database is repaired
 * with its own tools (backups, PITR). Commands ask `store.repair` and refuse where it is absent.
 */
export interface Repair {
  /** The backup store:restore puts back by default. */
  readonly backup: string
  /** Puts a valid backup back as the store; the current one is moved aside, never deleted. */
  restore(from: string): Promise<RestoreReport>
  /** 2FA off whatever state the store is in (moves aside what cannot be used, never deletes). */
  forceDisable(opts: {leaveStig: boolean; oathFile?: string}): Promise<ForceReport>
  /**
   * Settings changed without opening a secret (works without the key); `problem` says why the
   * secrets cannot be opened, when they cannot. Undefined when the ordinary update must be used
   * instead (the secrets open and a users file's replay state must be copied into the store).
   */
  updateSettingsSealed(change: (s: Settings) => Settings): Promise<{before: Settings; problem?: string} | undefined>
}

/** The pam_oath users file as a store that keeps one sees it (doctor, ssh:sync --check). */
export interface UsersFileReader {
  /** The file as it is now, or undefined when there is none; never follows a symbolic link. */
  read(path: string): UsersFile | undefined
  /** What interrupted writers left beside it. */
  leftovers(path: string): {lock: boolean; pamNew: boolean; temps: string[]}
}

/**
 * Persistence behind one seam: commands, the login path and the responder talk to this interface
 * only; each backend folder (file/, postgres/) implements it. The policy (decideLogin/applyEffect)
 * never learns which backend it runs on. What only one backend can do is an optional capability
 * (`repair`, `usersFile`), asked for by name, never by class (scripts/check-imports.mjs).
 */
export interface StoreBackend {
  /** The store as given (a path or a URL): passed on to sub-commands. */
  readonly spec: string
  /** How messages name the store (a path, or a URL without its password). */
  readonly description: string
  /** False where the pam_oath users file cannot be kept (a shared database): SSH goes through RADIUS. */
  readonly localOathFile: boolean
  /** What the last update did to the pam_oath users file (undefined: none is configured). */
  readonly oathSync: SyncReport | undefined
  /**
   * What the last update or updateUser changed (undefined: none ran yet): the users whose
   * records it created, changed or dropped, and the settings before and after. The mirrors of
   * the state (the pam_oath users file) are written from it, under the backend's lock.
   */
  readonly lastChange: ChangeSet | undefined
  /** The full, validated state. */
  read(): Promise<Doc>
  /** The settings alone, without reading any user (optional: callers fall back to read()). */
  settings?(): Promise<Settings>
  /** Settings and user counts without decoding records (twofactor:status; optional: callers fall back to read()). */
  summary?(): Promise<StatusSummary>
  /** Every user in name order, a batch at a time (user:list; optional: callers fall back to read()). */
  eachUser?(fn: (batch: Array<[string, UserRecord]>) => void): Promise<void>
  /** Read-modify-write, serialised with every other writer and atomic; nothing is written when `fn` throws. */
  update<T>(fn: (doc: Doc) => T | Promise<T>): Promise<T>
  /**
   * update() for a change of one user: `fn` sees the settings and that user's record (absent when
   * there is none) and may change, create or drop that record only. Its cost does not grow with
   * the number of users.
   */
  updateUser<T>(user: string, fn: (doc: Doc) => T | Promise<T>): Promise<T>
  /** One user's check: `fn` sees the settings and that user's record, locked until its effect is stored. */
  login<T>(user: string, fn: (doc: Doc) => T): Promise<T>
  /** Seals every secret under a new key; `users` were re-sealed, `key` names where the new key is. */
  rotateKey(): Promise<{users: string[]; key: string}>
  /** Records one run: one event per user it acted on (or one without a user); returns a warning instead of failing the command. */
  recordEvent(command: string, user: string | null | string[], outcome: Outcome): Promise<string | undefined>
  /**
   * Audits the updates of this run as `by` names them: each update or updateUser that commits a
   * change writes its lines from its change set (one per user it touched; a change of the
   * settings alone, one without a user), under the backend's lock: the file store appends them
   * before it releases the lock, a database inserts them in the change's transaction. Logins are
   * not updates: they keep their own audit paths.
   */
  auditChanges(by: ChangeAudit): void
  /** What this run's updates audited as they committed (undefined: none did): every user their lines named, and the outcome of the last. */
  readonly changeAudited: AuditedChanges | undefined
  /** Many events at once, in one write (radius:serve); optional: others get recordEvent one by one. */
  recordEvents?(events: AuditRecord[]): Promise<string | undefined>
  readAudit(): Promise<AuditEvent[]>
  /** store:check: validates everything (throws exit 3 on a problem). */
  check(): Promise<StoreCheck>
  /** doctor's store checks; returns the document when it could be read. */
  doctor(): Promise<{findings: StoreFinding[]; doc?: Doc}>
  /** Logins and audit for a long-running responder (radius:serve); `warn` hears problems (rate-limited), never fatal. */
  responder(warn: (line: string) => void): Responder
  /** Releases connections (a no-op for files). */
  close(): Promise<void>
  /** Optional capability: repairs of a store this tool keeps itself (the file store). */
  readonly repair?: Repair
  /** Optional capability: the pam_oath users file this store keeps (present exactly when localOathFile). */
  readonly usersFile?: UsersFileReader
}

export interface OpenOptions {
  /** Key file for a database store (file stores keep theirs beside the store). */
  keyFile?: string
  /** Database connections kept open at most (a long-running responder wants more than a CLI run's 2). */
  poolSize?: number
}

/** A PostgreSQL URL (libpq style) rather than a file path. */
export const isDatabaseUrl = (spec: string): boolean => /^postgres(ql)?:\/\//i.test(spec)

/**
 * Opens the store `spec` names: a PostgreSQL URL → the database backend (its code, and the
 * client, are loaded only then, so the file path stays as fast as it was); anything else → the
 * file store at that path.
 */
export async function openStore(spec: string, opts: OpenOptions = {}): Promise<StoreBackend> {
  if (isDatabaseUrl(spec)) {
    const {PgStore} = await import('./postgres/store.js')
    return new PgStore(spec, opts)
  }
  const {FileBackend} = await import('./file/backend.js')
  return new FileBackend(spec)
}
