import {statSync} from 'node:fs'
import {dirname} from 'node:path'
import type {Doc} from '../../core/model.js'
import {type AuditEvent, readAudit, recordEvent} from '../audit.js'
import type {Outcome, StoreBackend, StoreCheck, StoreFinding} from '../backend.js'
import {checkPrivateFile} from '../files.js'
import {Store} from './store.js'

/** The file store (store.ts) behind the StoreBackend seam; its behaviour is the file Store's own. */
export class FileBackend implements StoreBackend {
  readonly store: Store
  readonly localOathFile = true
  constructor(readonly spec: string) {
    this.store = new Store(spec)
  }

  get description(): string {
    return this.store.path
  }

  get oathSync() {
    return this.store.oathSync
  }

  read(): Promise<Doc> {
    return this.store.read()
  }

  update<T>(fn: (doc: Doc) => T | Promise<T>): Promise<T> {
    return this.store.update(fn)
  }

  login<T>(user: string, fn: (doc: Doc) => T): Promise<T> {
    return this.store.login(user, fn)
  }

  async rotateKey(): Promise<{secrets: number; key: string}> {
    const {secrets} = await this.store.rotateKey()
    return {secrets, key: this.store.files.key}
  }

  async recordEvent(command: string, user: string | null, outcome: Outcome): Promise<string | undefined> {
    return recordEvent(this.store.files.audit, command, user, outcome)
  }

  async readAudit(): Promise<AuditEvent[]> {
    return readAudit(this.store.files.audit)
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
    const {path, files} = this.store
    const findings: StoreFinding[] = []
    const add = (status: StoreFinding['status'], message: string) => findings.push({check: 'store', status, message})
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
      add('finding', (error as Error).message)
      return {findings}
    }
    const problems: string[] = []
    const present: string[] = []
    for (const [name, file] of [['store', path], ['key', files.key], ['backup', files.backup], ['audit log', files.audit]] as const) {
      try {
        if (checkPrivateFile(file)) present.push(name)
      } catch (error) {
        problems.push((error as Error).message)
      }
    }
    if (problems.length > 0) for (const p of problems) add('finding', p)
    else add('ok', present.includes('store') ? `${path} and its key are private (0600)` : `${path} does not exist yet (defaults apply)`)
    return {findings, doc}
  }

  async close(): Promise<void> {}
}
