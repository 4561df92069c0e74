import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import {basename, dirname, join} from 'node:path'
import {forbidden, storeError, TfaError} from '../core/errors.js'

const errno = (error: unknown): string | undefined => (error as NodeJS.ErrnoException).code

/**
 * Refuses files that others could read or swap, as sshd's StrictModes does. Returns false when
 * the file does not exist.
 */
export function checkPrivateFile(path: string): boolean {
  let st: fs.Stats
  try {
    st = fs.lstatSync(path)
  } catch (error) {
    if (errno(error) === 'ENOENT') return false
    throw accessError(path, error)
  }
  if (st.isSymbolicLink()) throw storeError(`${path} is a symbolic link; tfactl only uses regular files: replace the link with the file itself`)
  if (!st.isFile()) throw storeError(`${path} is not a regular file`)
  const me = process.getuid?.() ?? 0
  if (st.uid !== me && st.uid !== 0) throw forbidden(`${path} belongs to uid ${st.uid}, not to you (uid ${me}): use your own --store, or run as root`)
  if (st.mode & 0o077) throw storeError(`${path} can be read or written by group or others (mode ${(st.mode & 0o777).toString(8)}): run chmod 600 ${path}`)
  return true
}

export function accessError(path: string, error: unknown) {
  if (errno(error) === 'EACCES' || errno(error) === 'EPERM') return forbidden(`permission denied: ${path} (run as its owner or with sudo)`)
  return storeError(`cannot read ${path}: ${(error as Error).message}`)
}

/** Flags that never follow a symbolic link planted in the final component. */
export const NOFOLLOW = fs.constants.O_NOFOLLOW

/** open(2) with O_NOFOLLOW; a link in its place is a store problem, never followed. */
export function openNoFollow(path: string, flags: number, mode = 0o600): number {
  try {
    return fs.openSync(path, flags | NOFOLLOW, mode)
  } catch (error) {
    if (errno(error) === 'ELOOP') throw storeError(`${path} is a symbolic link; tfactl only uses regular files: remove the link`)
    throw error
  }
}

/** Opens a side file for appending (created 0600 when missing), never through a link. */
export const openAppend = (path: string): number => openNoFollow(path, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT)

/**
 * Refuses a store directory others could use to swap or plant files (a link named like the lock
 * or the audit log, a store of their own): it must belong to the caller or root and be writable
 * by its owner alone. A missing directory is fine (it is created 0700).
 */
export function checkStoreDir(dir: string): void {
  let st: fs.Stats
  try {
    st = fs.lstatSync(dir)
  } catch (error) {
    if (errno(error) === 'ENOENT') return
    throw accessError(dir, error)
  }
  if (st.isSymbolicLink()) {
    try {
      st = fs.statSync(dir)
    } catch (error) {
      throw accessError(dir, error)
    }
  }
  if (!st.isDirectory()) throw storeError(`${dir} is not a directory`)
  const me = process.getuid?.() ?? 0
  if (st.uid !== me && st.uid !== 0)
    throw storeError(
      `the store directory ${dir} belongs to uid ${st.uid}, who could replace the store's files: run chown ${me} ${dir}, or use a store in a directory of your own`,
    )
  if (st.mode & 0o022)
    throw storeError(
      `the store directory ${dir} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}), who could plant files in it: run chmod go-w ${dir}`,
    )
}

/** Reads a private file, or undefined when it does not exist. */
export function readPrivateFile(path: string): Buffer | undefined {
  if (!checkPrivateFile(path)) return undefined
  let fd: number
  try {
    fd = openNoFollow(path, fs.constants.O_RDONLY)
  } catch (error) {
    if (error instanceof TfaError) throw error
    throw accessError(path, error)
  }
  try {
    return fs.readFileSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Runs `fn` with positioned reads of a private file (undefined when it does not exist), so that
 * a caller can read a few lines of a large file instead of all of it.
 */
export function readPrivateFileAt<T>(path: string, fn: (src: {size: number; read(position: number, length: number): Buffer}) => T): T | undefined {
  if (!checkPrivateFile(path)) return undefined
  let fd: number
  try {
    fd = openNoFollow(path, fs.constants.O_RDONLY)
  } catch (error) {
    if (error instanceof TfaError) throw error
    throw accessError(path, error)
  }
  try {
    const {size} = fs.fstatSync(fd)
    const read = (position: number, length: number): Buffer => {
      const buf = Buffer.allocUnsafe(Math.max(0, Math.min(length, size - position)))
      const n = fs.readSync(fd, buf, 0, buf.length, position)
      return buf.subarray(0, n)
    }
    return fn({size, read})
  } finally {
    fs.closeSync(fd)
  }
}

export const ensureDir = (dir: string): void => {
  fs.mkdirSync(dir, {recursive: true, mode: 0o700})
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

const tempPrefix = (path: string) => `${basename(path)}.tmp-`

/** Removes temp files a crashed writer left. Call only while holding the store lock. */
export function removeStaleTemps(path: string): void {
  const prefix = tempPrefix(path)
  for (const name of fs.readdirSync(dirname(path))) if (name.startsWith(prefix)) fs.rmSync(join(dirname(path), name), {force: true})
}

/** Makes `backup` a second name of the file at `path` (atomic, and costs no copy). */
function keepBackup(path: string, backup: string): void {
  const temp = join(dirname(path), `${tempPrefix(path)}${process.pid}-${randomBytes(4).toString('hex')}.bak`)
  fs.linkSync(path, temp)
  fs.renameSync(temp, backup)
  // rename() does nothing when both names are already links to one file (a crash between the
  // two renames last time left .bak linked to the store): the temp name must still go.
  fs.rmSync(temp, {force: true})
}

/**
 * Replaces `path` with `data` so that a crash at any moment leaves either the old or the new
 * content: write a temp file (0600), fsync it, keep the old file as `backup` (a hard link, so
 * it costs no copy), rename over, fsync the directory.
 */
export function atomicWrite(path: string, data: string | Buffer | Buffer[], backup?: string): void {
  const dir = dirname(path)
  const temp = join(dir, `${tempPrefix(path)}${process.pid}-${randomBytes(4).toString('hex')}`)
  const fd = openNoFollow(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL)
  try {
    if (Array.isArray(data))
      for (const chunk of data) for (let done = 0; done < chunk.length; ) done += fs.writeSync(fd, chunk, done) // pieces: no copy into one buffer
    else fs.writeFileSync(fd, data)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  if (backup && fs.existsSync(path)) keepBackup(path, backup)
  fsyncDir(dir)
  fs.renameSync(temp, path)
  fsyncDir(dir)
}
