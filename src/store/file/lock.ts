import {closeSync, constants, openSync} from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'
import {storeError} from '../../core/errors.js'
import {tryLockExclusive} from '../../os/oslock.js'

export const LOCK_WAIT_MS = 10_000

/**
 * Runs `fn` holding an exclusive OFD lock (fcntl, whole file; src/os/oslock.ts) on `lockPath`.
 * The kernel drops the lock when its holder dies, so a crashed process never leaves a lock
 * behind; the file itself stays and means nothing (no lock is ever taken over on its contents or
 * age). Gives up after `waitMs` with exit 3 (nothing has been changed by then).
 */
export async function withLock<T>(lockPath: string, fn: () => Promise<T>, waitMs = LOCK_WAIT_MS): Promise<T> {
  const fd = openSync(lockPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600)
  try {
    const deadline = Date.now() + waitMs
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      if (tryLockExclusive(fd)) break
      if (Date.now() >= deadline) throw storeError(`store is locked by another tfactl process (${lockPath}); nothing was changed, try again`)
      await sleep(delay)
    }
    return await fn()
  } finally {
    closeSync(fd) // closing the descriptor releases the lock
  }
}
