import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import {createRequire} from 'node:module'
import {basename, dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {EXIT, storeError, TfaError} from '../core/errors.js'
import type {Doc} from '../core/model.js'
import {importReplay, OATH_HEADER, type OathEntry, type OathUser, oathUsers, parseUsersFile, renderUsersFile} from '../core/oath.js'
import {accessError, fsyncDir} from './files.js'

// The disk side of the pam_oath users file. pam_oath (liboath usersfile.c, Debian 12) reads the
// file WITHOUT a lock, checks the code, then creates `<file>.lock` with O_CREAT|O_EXCL (if it
// exists the login fails at once), takes a blocking fcntl write lock on it, writes
// `<file>.new` (O_EXCL) from the copy it read, fsyncs, renames it over the file and unlinks
// the lock. tfactl takes the very same lock, writes through a temp name of its own (never
// `.new`, which would make pam_oath fail), and holds the lock until no pam_oath process still
// has an older copy open: such a process read before the rename and would otherwise write its
// stale copy back over ours; while the lock is held it cannot, and its login fails instead.

const require = createRequire(import.meta.url)
// fs-ext's fcntlSync passes an int where F_SETLK(W) expects a `struct flock *` (EFAULT); only the
// asynchronous fcntl builds the struct (whole file, l_whence SEEK_SET), like liboath's.
const fsExt = require('fs-ext') as {
  fcntl(fd: number, cmd: 'setlkw', arg: number, callback: (error: Error | null) => void): void
  constants: {F_WRLCK: number}
}

/** How long a sync waits for a lock pam_oath (or another tfactl) holds; then exit 3. */
export const OATH_LOCK_WAIT_MS = 10_000
/** How long a sync waits, holding the lock, for pam_oath processes that read an older copy. */
export const STALE_READER_WAIT_MS = 10_000

const TEMP_MARK = '.tfactl-tmp-'
const LOCK_MARK = /^tfactl (\d+)\n?$/

const errno = (error: unknown): string | undefined => (error as NodeJS.ErrnoException).code
const isRoot = (): boolean => (process.getuid?.() ?? -1) === 0

export const warn = (message: string): void => {
  process.stderr.write(`tfactl: warning: ${message}\n`)
}

export interface UsersFile {
  path: string
  text: string
  entries: OathEntry[]
  dev: number
  ino: number
  mode: number
  uid: number
}

/** The users file as it is now, or undefined when there is none. Never follows a symlink. */
export function readUsersFile(path: string): UsersFile | undefined {
  let fd: number
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  } catch (error) {
    if (errno(error) === 'ENOENT') return undefined
    if (errno(error) === 'ELOOP') throw storeError(`${path} is a symbolic link; tfactl writes the users file itself: use the real path with --oath-file`)
    throw accessError(path, error)
  }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw storeError(`${path} is not a regular file`)
    const text = fs.readFileSync(fd, 'utf8')
    return {path, text, entries: parseUsersFile(text), dev: st.dev, ino: st.ino, mode: st.mode & 0o7777, uid: st.uid}
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * SIGINT/SIGTERM/SIGHUP while the lock is held are acted on only after it is released, so that
 * Ctrl-C never leaves a `.lock` behind (pam_oath would refuse every code while it exists).
 * Returns the function that stops deferring and re-raises a signal that came meanwhile.
 */
function deferSignals(): () => void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
  let caught: NodeJS.Signals | undefined
  const onSignal = (signal: NodeJS.Signals) => {
    caught ??= signal
  }
  for (const s of signals) process.on(s, onSignal)
  return () => {
    for (const s of signals) process.off(s, onSignal)
    if (caught && process.listenerCount(caught) === 0) process.kill(process.pid, caught)
  }
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return errno(error) === 'EPERM'
  }
}

/**
 * A `.lock` that a tfactl process left when it was killed (SIGKILL, power loss) names that
 * process; once it is gone the lock is removed. pam_oath's own locks are empty and are never
 * touched: they last milliseconds, and a crashed pam_oath's lock is left for the admin.
 */
function breakStaleLock(path: string): boolean {
  let text: string
  try {
    text = fs.readFileSync(path, 'utf8')
  } catch (error) {
    return errno(error) === 'ENOENT' // gone meanwhile: try again at once
  }
  const mark = LOCK_MARK.exec(text)
  if (!mark) return false
  const pid = Number(mark[1])
  if (pid !== process.pid && isAlive(pid)) return false
  fs.rmSync(path, {force: true})
  warn(`removed ${path}, left behind by tfactl process ${pid}, which is gone`)
  return true
}

const fcntlWriteLock = (fd: number): Promise<void> =>
  new Promise((resolve, reject) => fsExt.fcntl(fd, 'setlkw', fsExt.constants.F_WRLCK, (error) => (error ? reject(error) : resolve())))

/** The lock pam_oath takes: `<file>.lock` created O_EXCL (mode 0600), with a POSIX write lock on it. */
export class UsersFileLock {
  private released = false
  private constructor(readonly path: string, private readonly fd: number, private readonly undefer: () => void) {}

  static async acquire(usersFile: string, waitMs = OATH_LOCK_WAIT_MS): Promise<UsersFileLock> {
    const path = `${usersFile}.lock`
    const deadline = Date.now() + waitMs
    for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
      const undefer = deferSignals()
      let fd: number
      try {
        fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
      } catch (error) {
        undefer()
        if (errno(error) !== 'EEXIST') throw errno(error) === 'ENOENT' ? storeError(`cannot create ${path}: the directory does not exist`) : accessError(path, error)
        if (breakStaleLock(path)) continue
        if (Date.now() >= deadline)
          throw storeError(
            `${path} exists: a pam_oath login or another tfactl holds the users file; nothing was changed, try again ` +
              '(if it stays, no login is running and it was left by a crash: pam_oath refuses every code while it exists, remove it)',
          )
        await sleep(delay)
        continue
      }
      try {
        fs.writeSync(fd, `tfactl ${process.pid}\n`)
        await fcntlWriteLock(fd)
      } catch (error) {
        fs.closeSync(fd)
        fs.rmSync(path, {force: true})
        undefer()
        throw storeError(`cannot lock ${usersFile}: ${(error as Error).message}`)
      }
      return new UsersFileLock(path, fd, undefer)
    }
  }

  /** Closes (dropping the fcntl lock) and unlinks the lock file, as pam_oath does. Idempotent. */
  release(): void {
    if (this.released) return
    this.released = true
    try {
      fs.closeSync(this.fd)
      fs.rmSync(this.path, {force: true})
    } catch (error) {
      warn(`could not remove ${this.path}: ${(error as Error).message}; pam_oath refuses every code until it is removed`)
    } finally {
      this.undefer()
    }
  }
}

/**
 * Replaces the users file with `text`: temp file in the same directory (0600, root-owned when
 * run as root), fsync, rename, fsync the directory. Call holding the lock.
 */
export function replaceUsersFile(path: string, text: string): void {
  const dir = dirname(path)
  const name = basename(path)
  // Temp files a killed tfactl left: ours alone, and only touched under the lock.
  for (const entry of fs.readdirSync(dir)) if (entry.startsWith(`${name}${TEMP_MARK}`)) fs.rmSync(join(dir, entry), {force: true})
  const temp = join(dir, `${name}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`)
  const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
  try {
    try {
      fs.writeFileSync(fd, text)
      fs.fchmodSync(fd, 0o600)
      if (isRoot()) fs.fchownSync(fd, 0, 0)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(temp, path)
  } catch (error) {
    fs.rmSync(temp, {force: true})
    throw error
  }
  fsyncDir(dir)
}

const usesLiboath = (pid: string): boolean => {
  try {
    return /liboath|pam_oath/.test(fs.readFileSync(`/proc/${pid}/maps`, 'utf8'))
  } catch {
    return true // cannot tell: assume it might write
  }
}

/**
 * Processes with liboath loaded that hold a replaced (unlinked) version of the users file open:
 * pam_oath logins that read it before it was replaced. Linux /proc; [] where it cannot look.
 */
export function staleReaders(path: string): number[] {
  const suffix = `/${basename(path)} (deleted)`
  let dev: number
  let procs: string[]
  try {
    dev = fs.statSync(dirname(path)).dev
    procs = fs.readdirSync('/proc')
  } catch {
    return []
  }
  const pids: number[] = []
  for (const pid of procs) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue
    let fds: string[]
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue
    }
    const holds = fds.some((fd) => {
      try {
        if (!fs.readlinkSync(`/proc/${pid}/fd/${fd}`).endsWith(suffix)) return false
        const st = fs.statSync(`/proc/${pid}/fd/${fd}`)
        return st.dev === dev && st.nlink === 0
      } catch {
        return false
      }
    })
    if (holds && usesLiboath(pid)) pids.push(Number(pid))
  }
  return pids
}

/** Waits until no pam_oath process holds an older copy (they fail on the lock we hold). */
export async function waitForStaleReaders(path: string, waitMs = STALE_READER_WAIT_MS): Promise<number[]> {
  const deadline = Date.now() + waitMs
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    const pids = staleReaders(path)
    if (pids.length === 0 || Date.now() >= deadline) return pids
    await sleep(delay)
  }
}

/** Whether the file on disk must be rewritten to become `text` (content, mode or owner differ). */
const needsWrite = (file: UsersFile | undefined, text: string): boolean =>
  !file || file.text !== text || file.mode !== 0o600 || (isRoot() && file.uid !== 0)

/** What an update did to the users file. */
export interface SyncReport {
  path: string
  /** Users who have a line in the file. */
  users: string[]
  /** Whether the file was written. */
  changed: boolean
  /** Users whose replay state pam_oath had recorded was copied into the store. */
  imported: string[]
}

/**
 * pam_oath writes `<file>.new` only while it holds the lock, so one that exists while we hold it
 * was left by an interrupted pam_oath, and makes every later login fail (O_EXCL): remove it.
 */
function removeStalePamNew(path: string): void {
  try {
    fs.unlinkSync(`${path}.new`)
    warn(`removed ${path}.new, left behind by an interrupted pam_oath login (it made every SSH code fail)`)
  } catch (error) {
    if (errno(error) !== 'ENOENT') throw accessError(`${path}.new`, error)
  }
}

/**
 * A users file tfactl did not write (no header) may list users the store does not know; taking
 * it over would drop their lines, and pam_oath would let them in with the password alone.
 */
function refuseForeignUsers(file: UsersFile | undefined, users: OathUser[]): void {
  if (!file || file.text.startsWith(OATH_HEADER)) return
  const kept = new Set(users.map((u) => u.user))
  const dropped = [...new Set(file.entries.map((e) => e.user))].filter((u) => !kept.has(u))
  if (dropped.length > 0)
    throw new TfaError(
      `${file.path} was not written by tfactl and lists users who would lose 2FA over SSH (${dropped.join(', ')}), so nothing was changed: ` +
        `import them first (tfactl user:secret:import --from users.oath ${file.path}), or move the file away`,
      EXIT.usage,
      'oath_foreign',
    )
}

/** The users file held under its lock for the length of one store update. */
class Session {
  private constructor(readonly path: string, private readonly lock: UsersFileLock, readonly file: UsersFile | undefined) {}

  static async open(path: string): Promise<Session> {
    const lock = await UsersFileLock.acquire(path)
    try {
      removeStalePamNew(path)
      return new Session(path, lock, readUsersFile(path))
    } catch (error) {
      lock.release()
      throw error
    }
  }

  get entries(): OathEntry[] {
    return this.file?.entries ?? []
  }

  release(): void {
    this.lock.release()
  }
}

/**
 * The store's update hook, run under the store lock. With a users file configured it holds
 * the file's lock from before `run` until the file is written, so that:
 * - replay state pam_oath recorded is in the document before `run` decides anything (a code
 *   used over SSH is refused by login:check, and kept when lines are dropped);
 * - a user who cannot be expressed in the file stops the update before anything is saved;
 * - the file is rewritten from the saved document, keeping pam_oath's replay fields (and
 *   writing the store's, e.g. a code login:check accepted, so sshd refuses it).
 * Without a users file it only runs `run` and `save`: no extra file I/O.
 */
export async function syncUsersFile<T>(doc: Doc, run: () => Promise<T>, save: () => Promise<void>): Promise<{result: T; report?: SyncReport}> {
  let session: Session | undefined
  const configured = doc.settings.oathFile
  try {
    const imported = new Set<string>()
    if (doc.settings.oathFile) {
      session = await Session.open(doc.settings.oathFile)
      for (const user of importReplay(doc, session.entries, Date.now())) imported.add(user)
    }
    const result = await run()
    const path = doc.settings.oathFile
    if (path !== (session?.path ?? null)) {
      session?.release()
      session = undefined
      if (path) {
        session = await Session.open(path)
        for (const user of importReplay(doc, session.entries, Date.now())) imported.add(user)
      }
    }
    if (!session || !path) {
      await save()
      return {result}
    }
    const users = oathUsers(doc) // fails closed, before anything is saved
    if (path !== configured) refuseForeignUsers(session.file, users)
    const text = renderUsersFile(users, session.entries, Date.now(), doc.settings.window)
    await save()
    const changed = needsWrite(session.file, text)
    if (changed) {
      try {
        replaceUsersFile(path, text)
      } catch (error) {
        const reason = error instanceof TfaError ? error.message : `${(error as NodeJS.ErrnoException).code ?? ''} ${(error as Error).message}`.trim()
        throw storeError(`the store was updated, but the pam_oath users file ${path} could not be written (${reason}): fix that and run tfactl ssh:sync`)
      }
      const left = await waitForStaleReaders(path)
      if (left.length > 0)
        warn(`pam_oath process(es) ${left.join(', ')} still hold an older copy of ${path} and may write it back: check with tfactl ssh:sync --check`)
    }
    return {result, report: {path, users: users.map((u) => u.user), changed, imported: [...imported]}}
  } finally {
    session?.release()
  }
}

/** The lock and temp files pam_oath and tfactl leave when interrupted. */
export function leftovers(path: string): {lock: boolean; pamNew: boolean; temps: string[]} {
  const dir = dirname(path)
  const name = basename(path)
  let entries: string[] = []
  try {
    entries = fs.readdirSync(dir)
  } catch {
    // no directory: nothing left over
  }
  return {
    lock: entries.includes(`${name}.lock`),
    pamNew: entries.includes(`${name}.new`),
    temps: entries.filter((e) => e.startsWith(`${name}${TEMP_MARK}`)),
  }
}
