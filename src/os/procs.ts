import * as fs from 'node:fs'
import {basename, dirname, join} from 'node:path'

/** A process that has a file open. */
export interface Opener {
  pid: number
  command: string
}

/** A file's name as /proc/PID/fd shows it (symbolic links in its directory resolved). */
export function procName(path: string): string {
  try {
    return join(fs.realpathSync(dirname(path)), basename(path))
  } catch {
    return path
  }
}

const readOr = (path: string): string => {
  try {
    return fs.readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

/** The command line of `pid` as ps shows it (else its name). */
export function commandOf(pid: number): string {
  const line = readOr(`/proc/${pid}/cmdline`).split('\0').filter(Boolean).join(' ')
  return line || readOr(`/proc/${pid}/comm`).trim() || '?'
}

/**
 * Pids (other than this one) with an open descriptor for which `matches(target, fdPath)` holds:
 * `target` is what /proc/PID/fd/N links to, `fdPath` that link (stat it to see the open file).
 * One walk of /proc; [] where /proc cannot be read. Processes of other users are seen as root.
 */
export function pidsHolding(matches: (target: string, fdPath: string) => boolean): number[] {
  let procs: string[]
  try {
    procs = fs.readdirSync('/proc')
  } catch {
    return []
  }
  const pids: number[] = []
  for (const entry of procs) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    let fds: string[]
    try {
      fds = fs.readdirSync(`/proc/${entry}/fd`)
    } catch {
      continue
    }
    const holds = fds.some((fd) => {
      const fdPath = `/proc/${entry}/fd/${fd}`
      try {
        return matches(fs.readlinkSync(fdPath), fdPath)
      } catch {
        return false
      }
    })
    if (holds) pids.push(Number(entry))
  }
  return pids
}

/**
 * Processes that have one of `paths` open. This sees a lock whatever its kind (flock, POSIX,
 * OFD): to hold one, a process keeps the file open. Linux only.
 */
export function openers(paths: string[]): Opener[] {
  const wanted = new Set(paths)
  return pidsHolding((target) => wanted.has(target)).map((pid) => ({pid, command: commandOf(pid)}))
}

/** `pid 123 (node hold.js), pid 456 (sshd: alice)`. */
export const describeOpeners = (list: Opener[]): string => list.map((p) => `pid ${p.pid} (${p.command.slice(0, 80)})`).join(', ')

/** A process's state letter (R, S, D, T stopped, Z …); undefined when it is gone. */
export function processState(pid: number): string | undefined {
  const stat = readOr(`/proc/${pid}/stat`)
  return stat ? stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] : undefined
}
