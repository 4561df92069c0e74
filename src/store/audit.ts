import * as fs from 'node:fs'
import {ensureDir, openNoFollow, openPrivate, readPrivateFile} from '../os/files.js'
import {dirname} from 'node:path'

/** One line of the audit log. Never a secret or a code: only who, what, whom and the outcome. */
export interface AuditEvent {
  time: string
  /** The host that ran the command (database stores, which many hosts share). */
  host?: string
  actor: {uid: number; sudoUser: string | null}
  command: string
  user: string | null
  outcome: string
  reason: string | null
  /** The RADIUS client (NAS) the request came from, for radius:serve decisions. */
  client?: string
}

/** What a run's updates are audited as (StoreBackend.auditChanges): its command, and the outcome it reports for a change as the change commits. */
export interface ChangeAudit {
  command: string
  outcome(): {outcome: string; reason: string | null}
}

/**
 * `<audit log>.lost`: an empty file that exists once an event could not be recorded (a full
 * disk, an I/O error). Creating it needs no data block, so it works when the disk is full;
 * its mtime says when the first loss happened. `doctor` reports it; the admin removes it once
 * the gap was looked at.
 */
export const lossMarker = (path: string): string => `${path}.lost`

/**
 * Appends whole JSON lines or nothing, in one write (O_APPEND: concurrent writers never
 * interleave within a write). A tail left torn by a crash is ended first, so the torn bytes
 * become a line of their own (skipped on reading) instead of swallowing this event. A short
 * write (a full disk) is cut back off, so no half line stays behind.
 */
export function appendAudit(path: string, events: AuditEvent | AuditEvent[]): void {
  ensureDir(dirname(path))
  // Read-write so that the last byte can be checked (pread ignores O_APPEND; writes go to the end).
  const fd = openPrivate(path, fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_CREAT)!
  try {
    const body = (Array.isArray(events) ? events : [events]).map((e) => `${JSON.stringify(e)}\n`).join('')
    const {size} = fs.fstatSync(fd)
    const last = Buffer.alloc(1)
    const torn = size > 0 && fs.readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a
    const data = Buffer.from(torn ? `\n${body}` : body)
    const written = fs.writeSync(fd, data)
    if (written < data.length) {
      cutBack(fd, data.subarray(0, written))
      throw Object.assign(new Error(`no space left on the device (${written} of ${data.length} bytes written, taken back)`), {code: 'ENOSPC'})
    }
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** Removes the `partial` bytes a short write left at the end of the file, if they are still its tail. */
function cutBack(fd: number, partial: Buffer): void {
  if (partial.length === 0) return
  const {size} = fs.fstatSync(fd)
  if (size < partial.length) return
  // Only our own bytes are taken back: a line a concurrent writer appended after them stays.
  const tail = Buffer.alloc(partial.length)
  fs.readSync(fd, tail, 0, tail.length, size - partial.length)
  if (tail.equals(partial)) fs.ftruncateSync(fd, size - partial.length)
}

/** Records that events were lost (best effort: the caller already warns). */
function markLoss(path: string): void {
  try {
    ensureDir(dirname(path))
    fs.closeSync(openNoFollow(lossMarker(path), fs.constants.O_WRONLY | fs.constants.O_CREAT))
  } catch {
    // nothing more can be done: the warning on stderr is all that is left
  }
}

/**
 * Records one run of `command`: one line per user it acted on (a bulk command names every
 * user), or one line without a user. Returns a warning instead of failing the command, and
 * leaves the loss marker when nothing could be written.
 */
export function recordEvent(
  path: string,
  command: string,
  user: string | null | string[],
  outcome: {outcome: string; reason: string | null},
): string | undefined {
  const users = Array.isArray(user) ? (user.length > 0 ? user : [null]) : [user]
  const time = new Date().toISOString()
  const actor = {uid: process.getuid?.() ?? -1, sudoUser: process.env.SUDO_USER || null}
  try {
    appendAudit(
      path,
      users.map((u) => ({time, actor, command, user: u, ...outcome})),
    )
    return undefined
  } catch (error) {
    // A caller without access to the store's directory (a user on root's store) was already
    // told "permission denied"; it has no audit trail to write and nothing was lost.
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EACCES' || code === 'EPERM' || (error as {exit?: number}).exit === 4) return undefined
    markLoss(path)
    return `could not write the audit log: ${(error as Error).message} (the loss is noted for tfactl doctor)`
  }
}

export function readAudit(path: string): AuditEvent[] {
  const raw = readPrivateFile(path)
  if (!raw) return []
  return raw
    .toString('utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as AuditEvent]
      } catch {
        return [] // a line cut short by a crash
      }
    })
}

/** When events were first lost, or undefined when none were. */
export function auditLoss(path: string): Date | undefined {
  try {
    return fs.lstatSync(lossMarker(path)).mtime
  } catch {
    return undefined
  }
}

/** A name as a terminal should show it: control and format characters escaped (\\xNN, \\u{N}). */
export const escapeControls = (text: string): string =>
  text.replace(/[\p{C}\\]/gu, (c) =>
    c === '\\' ? '\\\\' : c.codePointAt(0)! < 0x100 ? `\\x${c.codePointAt(0)!.toString(16).padStart(2, '0')}` : `\\u{${c.codePointAt(0)!.toString(16)}}`,
  )
