import {createHash} from 'node:crypto'
import {renameSync, rmSync} from 'node:fs'
import {storeError} from '../core/errors.js'
import {atomicWrite, checkStoreDir, fsyncDir, readPrivateFile} from '../os/files.js'
import {newKey} from './secrets.js'
import {dirname} from 'node:path'

/** Which key sealed the secrets, without revealing the key. */
export function keyId(key: Buffer): string {
  let id = keyIds.get(key)
  if (id === undefined) keyIds.set(key, (id = createHash('sha256').update(key).digest('hex').slice(0, 16)))
  return id
}
/** Ids of the keys read by this process (a responder opens every record's secret by id: the key is hashed once, not per record). */
const keyIds = new WeakMap<Buffer, string>()

/** Access to the keys that seal secrets: the one a store names, and the one new writes use. */
export interface KeyRing {
  /** The key file, for messages. */
  readonly path?: string
  byId(id: string): Buffer | undefined
  current(): {id: string; key: Buffer}
}

/**
 * `<store>.key` (32 random bytes, 0600), created with the first secret. During a rotation the new
 * key waits in `<store>.key.next` until the store sealed with it is in place, so a crash at any
 * point leaves a store whose key is on disk.
 *
 * Migration: a store written before keys were named after the store is sealed with the shared
 * `tfactl.key` of its directory. That key is only ever read (as a fallback by id); the next
 * write, under the store lock, creates `<store>.key` first and then seals the store with it, so a
 * crash in between leaves the old store and its old key. The shared key is never changed or
 * removed: other stores of the directory (and old backups) may still need it.
 */
export class KeyFiles implements KeyRing {
  readonly next: string
  private cache = new Map<string, Buffer | undefined>()
  private override: Buffer | undefined
  /**
   * The directory of the key files (the key, `.next`, the shared legacy key: all in one) needs no
   * check of its own: it was checked, or it is the store's directory and the file store checks
   * that before every read and write (so a login walks it once).
   */
  private dirChecked: boolean

  constructor(
    readonly path: string,
    readonly legacy?: string,
    opts: {storeDirChecked?: boolean} = {},
  ) {
    this.dirChecked = opts.storeDirChecked ?? false
    this.next = `${path}.next`
  }

  private load(path: string): Buffer | undefined {
    if (!this.cache.has(path)) {
      if (!this.dirChecked) checkStoreDir(dirname(this.path), "the key file's directory") // a key others could swap seals nothing
      this.dirChecked = true
      const raw = readPrivateFile(path)
      if (raw && raw.length !== 32) throw storeError(`${path}: expected a 32-byte key, found ${raw.length} bytes`)
      this.cache.set(path, raw)
    }
    return this.cache.get(path)
  }

  /** Drops what was read, so that the files are read again. */
  forget(): void {
    this.cache.clear()
  }

  /** Whether this host holds a key file at all (whatever key it is). */
  held(): boolean {
    return this.load(this.path) !== undefined
  }

  byId(id: string): Buffer | undefined {
    const key = this.load(this.path)
    const next = this.load(this.next)
    if (key && keyId(key) === id) return key
    if (next && keyId(next) === id) return next
    if (!this.legacy) return undefined
    const old = this.load(this.legacy)
    return old && keyId(old) === id ? old : undefined
  }

  current(): {id: string; key: Buffer} {
    let key = this.override ?? this.load(this.path)
    if (!key) {
      key = newKey()
      atomicWrite(this.path, key)
      this.cache.set(this.path, key)
    }
    return {id: keyId(key), key}
  }

  /** Rotation, step 1: the new key on disk beside the old one; new writes use it. */
  prepareNext(): void {
    const key = newKey()
    atomicWrite(this.next, key)
    this.cache.set(this.next, key)
    this.override = key
  }

  /**
   * Rotation, last step (and recovery after a crash): once the store names the next key, it
   * becomes the key; a next key the store does not use is an abandoned rotation and goes.
   */
  settle(storeKeyId: string | null): void {
    const next = this.load(this.next)
    if (!next) return
    if (storeKeyId === keyId(next)) {
      renameSync(this.next, this.path)
      fsyncDir(dirname(this.path))
      this.cache.set(this.path, next)
    } else {
      rmSync(this.next, {force: true})
    }
    this.cache.delete(this.next)
    this.override = undefined
  }
}
