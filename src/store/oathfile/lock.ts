import * as fs from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'
import {storeError} from '../../core/errors.js'
import {accessError} from '../../os/files.js'
import {waitLockExclusive} from '../../os/oslock.js'
import {errno, LOCK_MARK, warn} from './file.js'

// Phase 1 (liboath: the lock). pam_oath (Debian 12, liboath 2.6.7-3.1+deb12u1, seen with strace)
// does: open(`<file>.lock`, O_WRONLY|O_CREAT|O_EXCL|O_TRUNC), then fcntl(F_SETLKW, F_WRLCK, whole
// file), then `.new` O_EXCL, rename, unlink the lock. tfactl takes the same lock before it reads
// the file it will replace. The O_EXCL create is what excludes; the fcntl lock is an OFD lock
// (whole file, write), which conflicts with pam_oath's classic POSIX one exactly as two of those
// would.

/** How long a sync waits for a lock pam_oath (or another tfactl) holds; then exit 3. */
export const OATH_LOCK_WAIT_MS = 10_000
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

/** The lock pam_oath takes: `<file>.lock` created O_EXCL (mode 0600), with a whole-file fcntl write lock on it. */
export class UsersFileLock {
  private released = false
  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly undefer: () => void,
  ) {}

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
        if (errno(error) !== 'EEXIST')
          throw errno(error) === 'ENOENT' ? storeError(`cannot create ${path}: the directory does not exist`) : accessError(path, error)
        if (breakStaleLock(path)) continue
        if (Date.now() >= deadline)
          throw storeError(
            `${path} exists: a pam_oath login or another tfactl holds the users file; nothing was changed, try again ` +
              '(if it stays, no login is running and it was left by a crash: pam_oath refuses every code while it exists, remove it, or run tfactl twofactor:disable --force)',
          )
        await sleep(delay)
        continue
      }
      try {
        fs.writeSync(fd, `tfactl ${process.pid}\n`)
        await waitLockExclusive(fd)
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
 * pam_oath writes `<file>.new` only while it holds the lock, so one that exists while we hold it
 * was left by an interrupted pam_oath, and makes every later login fail (O_EXCL): remove it.
 */
export function removeStalePamNew(path: string): void {
  try {
    fs.unlinkSync(`${path}.new`)
    warn(`removed ${path}.new, left behind by an interrupted pam_oath login (it made every SSH code fail)`)
  } catch (error) {
    if (errno(error) !== 'ENOENT') throw accessError(`${path}.new`, error)
  }
}
