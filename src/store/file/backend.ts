import {statSync} from 'node:fs'
import {dirname} from 'node:path'
import {EXIT, TfaError} from '../../core/errors.js'
import type {Doc, Settings, StatusSummary, UserRecord} from '../../core/model.js'
import {type AuditEvent, auditLoss, type ChangeAudit, lossMarker, readAudit, recordEvent} from '../audit.js'
import {
  type AuditedChanges,
  auditedMore,
  type Outcome,
  type Repair,
  type Responder,
  type StoreBackend,
  type StoreCheck,
  type StoreFinding,
  type UsersFileReader,
} from '../backend.js'
import {notice} from '../notices.js'
import {leftovers, readUsersFile} from '../oathfile/file.js'
import {AuditWriter} from './audit-sink.js'
import {GroupCommit} from './group-commit.js'
import {checkPrivateFile} from '../../os/files.js'
import {openers, processState, procName} from '../../os/procs.js'
import {emergencyFix, forceDisable, restoreStore, updateSettingsSealed} from './recovery.js'
import {peekSettings} from './header.js'
import {StoredUsers} from './records.js'
import {Store} from './store.js'

/** The file store (store.ts) behind the StoreBackend seam; its behaviour is the file Store's own. */
export class FileBackend implements StoreBackend {
  readonly store: Store
  readonly localOathFile = true
  readonly usersFile: UsersFileReader = {read: readUsersFile, leftovers}
  readonly repair: Repair
  changeAudited: AuditedChanges | undefined
  private auditBy: ChangeAudit | undefined
  constructor(readonly spec: string) {
    const store = new Store(spec)
    this.store = store
    this.repair = {
      backup: store.files.backup,
      restore: (from) => restoreStore(store, from),
      forceDisable: (opts) => forceDisable(store, opts),
      updateSettingsSealed: (change) => this.updateSettingsSealed(change),
    }
  }

  /**
   * twofactor:disable without the key. pam_oath records the codes used over SSH in its users
   * file; the full update copies them into the store before the file is emptied, and opens the
   * secrets for that: with a users file and secrets that open, that update is the right one
   * (undefined). Otherwise only the settings are rewritten: no key needed.
   */
  private async updateSettingsSealed(change: (s: Settings) => Settings): Promise<{before: Settings; problem?: string} | undefined> {
    let unreadable: string | undefined
    if (peekSettings(this.store.path)?.oathFile) {
      try {
        await this.store.read()
      } catch (error) {
        if (!(error instanceof TfaError) || error.exit !== EXIT.store) throw error
        unreadable = error.message
      }
      if (unreadable === undefined) return undefined
    }
    const {before, keyProblem} = await updateSettingsSealed(this.store, change)
    const problem = unreadable ?? keyProblem
    return problem ? {before, problem} : {before}
  }

  /** The responder's logins are committed in groups (group-commit.ts); its audit lines go out one write per batch. */
  responder(warn: (line: string) => void): Responder {
    const commits = new GroupCommit(this.store)
    return {login: (user, fn) => commits.login(user, fn), audit: new AuditWriter(this.store.files.audit, warn)}
  }

  get description(): string {
    return this.store.path
  }

  get oathSync() {
    return this.store.oathSync
  }

  get lastChange() {
    return this.store.lastChange
  }

  read(): Promise<Doc> {
    return this.store.read()
  }

  settings(): Promise<Settings> {
    return this.store.settings()
  }

  summary(): Promise<StatusSummary> {
    return this.store.summary()
  }

  eachUser(fn: (batch: Array<[string, UserRecord]>) => void): Promise<void> {
    return this.store.eachUser(fn)
  }

  update<T>(fn: (doc: Doc) => T | Promise<T>): Promise<T> {
    return this.store.update(fn, this.auditCommit())
  }

  auditChanges(by: ChangeAudit): void {
    this.auditBy = by
  }

  /** Appends a saved change's lines to the audit log, under the store lock (a failure is a notice and the loss marker, as for every event). */
  private auditCommit(): ((users: string[]) => void) | undefined {
    const by = this.auditBy
    if (!by) return undefined
    return (users) => {
      const outcome = by.outcome()
      const problem = recordEvent(this.store.files.audit, by.command, users, outcome)
      this.changeAudited = auditedMore(this.changeAudited, users, outcome)
      if (problem) notice(problem)
    }
  }

  /**
   * That user's line alone when the change needs no more (Store.updateOne: nothing changed, or
   * only the hot state, journaled); else the update path, which reads records lazily (records.ts):
   * only the records `fn` reads are decoded. A change of another user is refused, as on every
   * backend, and nothing is written.
   */
  updateUser<T>(user: string, fn: (doc: Doc) => T | Promise<T>): Promise<T> {
    return this.store.updateOne(
      user,
      async (doc) => {
        // what was changed before `fn` (replay state a users file out of step gave every user) is not its doing
        const already = doc.users instanceof StoredUsers ? doc.users.changedUsers() : new Set<string>()
        const result = await fn(doc)
        if (doc.users instanceof StoredUsers)
          for (const name of doc.users.changedUsers()) if (name !== user && !already.has(name)) throw new Error(`a change of ${user} also changed ${name}`) // a caller's bug, never written
        return result
      },
      this.auditCommit(),
    )
  }

  login<T>(user: string, fn: (doc: Doc) => T): Promise<T> {
    return this.store.login(user, fn)
  }

  async rotateKey(): Promise<{users: string[]; key: string}> {
    const {users} = await this.store.rotateKey()
    return {users, key: this.store.files.key}
  }

  async recordEvent(command: string, user: string | null | string[], outcome: Outcome): Promise<string | undefined> {
    return recordEvent(this.store.files.audit, command, user, outcome)
  }

  /** Events written before side files were named after the store (the directory's audit.log) come first. */
  async readAudit(): Promise<AuditEvent[]> {
    const {audit, legacyAudit} = this.store.files
    return [...readAudit(legacyAudit), ...readAudit(audit)]
  }

  async check(): Promise<StoreCheck> {
    const {path, files} = this.store
    const doc = await this.store.read()
    const exists = checkPrivateFile(path)
    checkPrivateFile(files.key)
    checkPrivateFile(files.backup)
    return {path, valid: true, exists, version: doc.version, users: doc.users.size}
  }

  async doctor(): Promise<{findings: StoreFinding[]; doc?: Doc}> {
    const findings: StoreFinding[] = []
    const doc = await this.checkFiles(findings)
    const lost = auditLoss(this.store.files.audit)
    if (lost)
      findings.push({
        check: 'audit log',
        status: 'finding',
        message: `events were lost: the audit log could not be written (first at ${lost.toISOString()}, e.g. a full disk); once looked at, remove ${lossMarker(this.store.files.audit)}`,
      })
    return {findings, doc}
  }

  private async checkFiles(findings: StoreFinding[]): Promise<Doc | undefined> {
    const {path, files} = this.store
    const add = (status: StoreFinding['status'], message: string, fix?: string) =>
      findings.push(fix ? {check: 'store', status, message, fix} : {check: 'store', status, message})
    try {
      const st = statSync(dirname(path))
      if (st.mode & 0o022) add('finding', `${dirname(path)} can be written by group or others: run chmod 700 ${dirname(path)}`)
    } catch {
      // no directory yet: the store does not exist, reported below
    }
    let doc: Doc
    try {
      doc = await this.store.read()
    } catch (error) {
      let unsafe = false // a permission problem: its message says what to run
      try {
        checkPrivateFile(path)
      } catch {
        unsafe = true
      }
      add('finding', (error as Error).message, unsafe ? undefined : emergencyFix(this.store))
      this.checkLock(add)
      return undefined
    }
    this.checkLock(add)
    const problems: string[] = []
    const present: string[] = []
    for (const [name, file] of [
      ['store', path],
      ['key', files.key],
      ['backup', files.backup],
      ['audit log', files.audit],
    ] as const) {
      try {
        if (checkPrivateFile(file)) present.push(name)
      } catch (error) {
        problems.push((error as Error).message)
      }
    }
    if (problems.length > 0) for (const p of problems) add('finding', p)
    else if (!present.includes('store')) add('ok', `${path} does not exist yet (defaults apply)`)
    else if (present.includes('key')) add('ok', `${path} and its key are private (0600)`)
    else add('ok', `${path} is private (0600); it has no key file${doc.users.size === 0 ? ` (the first secret creates ${files.key})` : ''}`)
    return doc
  }

  /** A store lock held by a stopped process makes every command wait, then fail. */
  private checkLock(add: (status: StoreFinding['status'], message: string, fix?: string) => void): void {
    const lock = this.store.files.lock
    for (const p of openers([procName(lock)])) {
      if (processState(p.pid) === 'T')
        add(
          'finding',
          `the store lock ${lock} is held by pid ${p.pid} (${p.command}), which is stopped: every tfactl command waits for it, then fails`,
          `kill -CONT ${p.pid}`,
        )
    }
  }

  async close(): Promise<void> {}
}
