import {Low} from 'lowdb'
import {dirname} from 'node:path'
import {storeError} from '../core/errors.js'
import {type Doc, emptyDoc} from '../core/model.js'
import {decodeStore, encodeStore, type KeyRing} from './codec.js'
import {atomicWrite, checkPrivateFile, ensureDir, readPrivateFile, removeStaleTemps} from './files.js'
import {withLock} from './lock.js'
import {sidecars} from './paths.js'
import {newKey} from './secrets.js'

/** The key file `tfactl.key` beside the store, created with the first secret. */
class KeyFile implements KeyRing {
  private key: Buffer | undefined
  constructor(private readonly path: string) {}
  get(): Buffer | undefined {
    if (this.key) return this.key
    const raw = readPrivateFile(this.path)
    if (raw && raw.length !== 32) throw storeError(`${this.path}: expected a 32-byte key, found ${raw.length} bytes`)
    return (this.key = raw)
  }
  getOrCreate(): Buffer {
    const existing = this.get()
    if (existing) return existing
    const key = newKey()
    atomicWrite(this.path, key)
    return (this.key = key)
  }
}

/** lowdb adapter: validated reads, atomic 0600 writes that keep the previous store as `.bak`. */
class StoreFile {
  constructor(readonly path: string, private readonly keys: KeyRing) {}
  async read(): Promise<Doc | null> {
    const raw = readPrivateFile(this.path)
    if (raw === undefined) return null
    try {
      return decodeStore(raw.toString('utf8'), this.path, this.keys)
    } catch (error) {
      const backup = sidecars(this.path).backup
      if (checkPrivateFile(backup)) (error as Error).message += ` (the previous valid store is kept in ${backup})`
      throw error
    }
  }
  async write(doc: Doc): Promise<void> {
    atomicWrite(this.path, encodeStore(doc, this.keys), sidecars(this.path).backup)
  }
}

/** A canonical in-memory rendering, to tell whether an update changed anything. */
const fingerprint = (doc: Doc): string => JSON.stringify([doc.settings, [...doc.users]])

export class Store {
  readonly files: ReturnType<typeof sidecars>
  private readonly keys: KeyFile
  constructor(readonly path: string) {
    this.files = sidecars(path)
    this.keys = new KeyFile(this.files.key)
  }

  private open(): Low<Doc> {
    return new Low<Doc>(new StoreFile(this.path, this.keys), emptyDoc())
  }

  /** The current state. No lock needed: the file is only ever replaced whole, by rename. */
  async read(): Promise<Doc> {
    const db = this.open()
    await db.read()
    return db.data
  }

  /**
   * Read-modify-write under the store lock. `fn` mutates the document; it is written (once,
   * atomically) only when something changed. An error thrown by `fn` writes nothing.
   */
  async update<T>(fn: (doc: Doc) => T | Promise<T>): Promise<T> {
    ensureDir(dirname(this.path))
    return withLock(this.files.lock, async () => {
      removeStaleTemps(this.path)
      removeStaleTemps(this.files.key)
      const db = this.open()
      await db.read()
      const before = fingerprint(db.data)
      const result = await fn(db.data)
      if (fingerprint(db.data) !== before) await db.write()
      return result
    })
  }
}
