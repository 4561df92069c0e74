import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import {basename, dirname, join, resolve} from 'node:path'
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
  judgePrivate(st, path)
  return true
}

/**
 * The file `path` names now, without following a link, when it is one checkPrivateFile would take
 * (a regular file, the caller's or root's, nothing for group or others); undefined for anything
 * else, which the caller opens and judges for its message. For a process that keeps a private
 * file open and asks, once a batch, whether the path still names it (compare dev and ino).
 */
export function lstatPrivate(path: string): fs.BigIntStats | undefined {
  const st = fs.lstatSync(path, {bigint: true, throwIfNoEntry: false})
  const me = BigInt(process.getuid?.() ?? 0)
  return st?.isFile() && (st.uid === me || st.uid === 0n) && (st.mode & 0o077n) === 0n ? st : undefined
}

/** What checkPrivateFile requires of a file, judged on what stat or fstat returned. */
function judgePrivate(st: fs.Stats, path: string): void {
  if (!st.isFile()) throw storeError(`${path} is not a regular file`)
  const me = process.getuid?.() ?? 0
  if (st.uid !== me && st.uid !== 0) throw forbidden(`${path} belongs to uid ${st.uid}, not to you (uid ${me}): use your own --store, or run as root`)
  if (st.mode & 0o077) throw storeError(`${path} can be read or written by group or others (mode ${(st.mode & 0o777).toString(8)}): run chmod 600 ${path}`)
}

/**
 * Opens a private file once, never through a link, and judges what was opened (fstat) as
 * checkPrivateFile judges a path: checking the path and then opening it again would let whoever
 * can change a directory on the way swap the file in between. Undefined when it does not exist
 * (without O_CREAT). O_NONBLOCK: a FIFO put in its place cannot hang the open.
 */
export function openPrivate(path: string, flags: number): number | undefined {
  let fd: number
  try {
    fd = openNoFollow(path, flags | fs.constants.O_NONBLOCK)
  } catch (error) {
    if (error instanceof TfaError) throw error
    if (errno(error) === 'ENOENT') return undefined
    throw accessError(path, error)
  }
  try {
    judgePrivate(fs.fstatSync(fd), path)
  } catch (error) {
    fs.closeSync(fd)
    throw error
  }
  return fd
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

/** Opens a side file for appending (created 0600 when missing), never through a link, judged as opened. */
export const openAppend = (path: string): number => openPrivate(path, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT)!

/** A directory that may not hold secrets: the first one, going up, that another user could change. */
export interface UnsafeDir {
  /** That directory (a real path). */
  path: string
  /** The directory asked about itself, not one above it. */
  own: boolean
  uid: number
  mode: number
  /** What is wrong with it, as a sentence's predicate. */
  why: string
}

/**
 * Whether `dir` may hold secrets, as OpenSSH's StrictModes decides: it must belong to the caller
 * or root and be writable by its owner alone, and so must every directory above it (its real
 * path), or another user could rename it away and put a directory or link of theirs in its
 * place. Above it, a directory others may write is fine with the sticky bit (/tmp): they cannot
 * rename what is not theirs. A missing `dir` is judged by the directories above it. Returns the
 * first directory that fails, or undefined; errors other than a missing path are thrown.
 */
export function unsafeDir(dir: string): UnsafeDir | undefined {
  const me = process.getuid?.() ?? 0
  let path = resolve(dir)
  let own = true
  for (;;) {
    try {
      path = fs.realpathSync.native(path)
      break
    } catch (error) {
      if (errno(error) !== 'ENOENT') throw error
    }
    if (dirname(path) === path) return undefined
    path = dirname(path)
    own = false // created 0700 by whoever needs it; what is above it decides
  }
  for (;;) {
    const st = fs.statSync(path)
    const mode = st.mode & 0o7777
    if (st.uid !== me && st.uid !== 0) return {path, own, uid: st.uid, mode, why: `belongs to uid ${st.uid}`}
    if (mode & 0o022 && (own || !(mode & 0o1000)))
      return {path, own, uid: st.uid, mode, why: `is writable by group or others (mode ${mode.toString(8)})${own ? '' : ' without the sticky bit'}`}
    if (dirname(path) === path) return undefined
    path = dirname(path)
    own = false
  }
}

/**
 * Refuses a directory for secrets (the store's, the key file's) that others could use to swap or
 * plant files (a link named like the lock or the audit log, a store of their own), or that sits
 * inside a directory they could swap: exit 3, saying how to fix it. A missing directory is fine
 * when what is above it is (it is created 0700).
 */
export function checkStoreDir(dir: string, what = 'the store directory'): void {
  let unsafe: UnsafeDir | undefined
  try {
    if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw storeError(`${dir} is not a directory`)
    unsafe = unsafeDir(dir)
  } catch (error) {
    if (error instanceof TfaError) throw error
    throw accessError(dir, error)
  }
  if (!unsafe) return
  const me = process.getuid?.() ?? 0
  const fix = unsafe.uid !== me && unsafe.uid !== 0 ? `run chown ${me} ${unsafe.path}` : `run chmod go-w ${unsafe.path}`
  if (unsafe.own) throw storeError(`${what} ${dir} ${unsafe.why}, so another user could replace or plant its files: ${fix}, or use a directory of your own`)
  throw storeError(`${what} ${dir} is inside ${unsafe.path}, which ${unsafe.why}, so another user could swap it: ${fix}, or use a directory elsewhere`)
}

/** Reads a private file, or undefined when it does not exist. */
export function readPrivateFile(path: string): Buffer | undefined {
  const fd = openPrivate(path, fs.constants.O_RDONLY)
  if (fd === undefined) return undefined
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
  const fd = openPrivate(path, fs.constants.O_RDONLY)
  if (fd === undefined) return undefined
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
