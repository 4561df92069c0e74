import {Low} from 'lowdb'
import {dirname} from 'node:path'
import {type Doc, emptyDoc} from '../core/model.js'
import {decodeStore, encodeStore} from './codec.js'
import {atomicWrite, checkPrivateFile, ensureDir, readPrivateFile, removeStaleTemps} from './files.js'
import {KeyFiles} from './keys.js'
import {withLock} from './lock.js'
import {type SyncReport, syncUsersFile} from './oathfile.js'
import {sidecars} from './paths.js'

/** lowdb adapter: validated reads, atomic 0600 writes that keep the previous store as `.bak`. */
class StoreFile {
  /** The key id the file on disk names (null: no secrets sealed yet). */
  keyId: string | null = null
  constructor(readonly path: string, private readonly keys: KeyFiles) {}

  async read(): Promise<Doc | null> {
    const raw = readPrivateFile(this.path)
    if (raw === undefined) return null
    try {
      const {doc, keyId} = decodeStore(raw.toString('utf8'), this.path, this.keys)
      this.keyId = keyId
      return doc
    } catch (error) {
      const backup = sidecars(this.path).backup
      if (checkPrivateFile(backup)) (error as Error).message += ` (the previous valid store is kept in ${backup})`
      throw error
    }
  }

  async write(doc: Doc): Promise<void> {
    const {text, keyId} = encodeStore(doc, this.keys)
    atomicWrite(this.path, text, sidecars(this.path).backup)
    this.keyId = keyId
  }
}

/** A canonical in-memory rendering, to tell whether an update changed anything. */
const fingerprint = (doc: Doc): string => JSON.stringify([doc.settings, [...doc.users]])

export class Store {
  readonly files: ReturnType<typeof sidecars>
  private readonly keys: KeyFiles
  /** What the last update did to the pam_oath users file (undefined: none is configured). */
  oathSync: SyncReport | undefined
  constructor(readonly path: string) {
    this.files = sidecars(path)
    this.keys = new KeyFiles(this.files.key)
  }

  /** The current state. No lock needed: the file is only ever replaced whole, by rename. */
  async read(): Promise<Doc> {
    const db = new Low<Doc>(new StoreFile(this.path, this.keys), emptyDoc())
    await db.read()
    return db.data
  }

  /**
   * Read-modify-write under the store lock. `fn` mutates the document; it is written (once,
   * atomically) only when something changed. An error thrown by `fn` writes nothing.
   * Every update also re-syncs the pam_oath users file, once one is configured (oathfile.ts).
   */
  async update<T>(fn: (doc: Doc) => T | Promise<T>): Promise<T> {
    return this.locked(async (db) => {
      const before = fingerprint(db.data)
      const save = async () => {
        if (fingerprint(db.data) !== before) await db.write()
      }
      const {result, report} = await syncUsersFile(db.data, async () => fn(db.data), save)
      this.oathSync = report
      return result
    })
  }

  /** Seals every secret under a new key; the old key stays valid until the new store is in place. */
  async rotateKey(): Promise<{secrets: number}> {
    return this.locked(async (db) => {
      this.keys.prepareNext()
      await db.write()
      this.keys.settle((db.adapter as StoreFile).keyId)
      return {secrets: [...db.data.users.values()].filter((u) => u.secret || u.pending).length}
    })
  }

  private async locked<T>(fn: (db: Low<Doc>) => Promise<T>): Promise<T> {
    ensureDir(dirname(this.path))
    return withLock(this.files.lock, async () => {
      removeStaleTemps(this.path)
      removeStaleTemps(this.files.key)
      removeStaleTemps(this.keys.next)
      const file = new StoreFile(this.path, this.keys)
      const db = new Low<Doc>(file, emptyDoc())
      await db.read()
      this.keys.settle(file.keyId) // finishes or drops a rotation a crash interrupted
      return fn(db)
    })
  }
}
