import {createRequire} from 'node:module'
import {storeError} from '../core/errors.js'

/**
 * Open file description (OFD) locks, fcntl(F_OFD_SETLK/F_OFD_SETLKW) on the whole file, from the
 * prebuilt N-API addon of `fs-native-extensions` (no compiler at install time). The kernel drops
 * such a lock when its last descriptor closes, so a killed holder never leaves one behind. OFD
 * locks conflict with the classic POSIX locks pam_oath takes (not with flock(2)).
 *
 * The addon file is loaded directly: the package's entry point (require-addon) costs about 10 ms,
 * the addon alone under 1 ms, and this runs on every login. Its calls are the addon's internal
 * API, so package.json pins fs-native-extensions to one exact version (1.5.1); bad arguments
 * abort the process (C asserts), so only the two wrappers below call it.
 */
interface Binding {
  tryLock(fd: number, offset: number, length: number, exclusive: boolean): void
  waitForLock(fd: number, offset: number, length: number, exclusive: boolean, ctx: object, done: (this: Waiter, error: Error | null) => void): ArrayBuffer
}

interface Waiter {
  handle: ArrayBuffer | null
  resolve(): void
  reject(error: Error): void
}

let binding: Binding | undefined

const require = createRequire(import.meta.url)
/** The prebuilt addons the pinned version ships (glibc); nothing is ever compiled. */
const PREBUILT: Record<string, () => unknown> = {
  'linux-x64': () => require('fs-native-extensions/prebuilds/linux-x64/fs-native-extensions.node'),
  'linux-arm64': () => require('fs-native-extensions/prebuilds/linux-arm64/fs-native-extensions.node'),
}

function addon(): Binding {
  if (binding) return binding
  const target = `${process.platform}-${process.arch}`
  const load = PREBUILT[target]
  if (!load) throw storeError(`no prebuilt file-locking addon for ${target} (fs-native-extensions ships linux-x64 and linux-arm64)`)
  try {
    binding = load() as Binding
  } catch (error) {
    throw storeError(`cannot load the file-locking addon for ${target} (fs-native-extensions): ${(error as Error).message.split('\n')[0]}`)
  }
  return binding
}

/** Takes an exclusive OFD lock on the whole file at once; false when another holder has it. */
export function tryLockExclusive(fd: number): boolean {
  try {
    addon().tryLock(fd, 0, 0, true)
    return true
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EAGAIN' || code === 'EACCES' || code === 'EWOULDBLOCK') return false
    throw error
  }
}

/** Waits (on libuv's thread pool, like F_SETLKW) for an exclusive OFD lock on the whole file. */
export function waitLockExclusive(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const waiter: Waiter = {handle: null, resolve, reject}
    // The returned buffer holds the request: keep it referenced until the callback runs.
    waiter.handle = addon().waitForLock(fd, 0, 0, true, waiter, function (this: Waiter, error) {
      this.handle = null
      if (error) this.reject(error)
      else this.resolve()
    })
  })
}
