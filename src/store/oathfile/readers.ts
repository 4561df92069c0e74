import * as fs from 'node:fs'
import {basename, dirname} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {pidsHolding} from '../../os/procs.js'

// Phase 2 (liboath: the gap between read and rename). A pam_oath login reads the file without a
// lock; if tfactl replaces it meanwhile, that login holds an older copy it may write back.

/** How long a sync waits, holding the lock, for pam_oath processes that read an older copy. */
export const STALE_READER_WAIT_MS = 10_000

const usesLiboath = (pid: number): boolean => {
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
  try {
    dev = fs.statSync(dirname(path)).dev
  } catch {
    return []
  }
  return pidsHolding((target, fdPath) => {
    if (!target.endsWith(suffix)) return false
    const st = fs.statSync(fdPath)
    return st.dev === dev && st.nlink === 0
  }).filter(usesLiboath)
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
