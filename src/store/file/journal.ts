import * as fs from 'node:fs'
import {type HotState, readHotState, Reader} from '../sealed.js'
import {atomicWrite, openAppend, readPrivateFile} from '../../os/files.js'

/**
 * The hot-state journal `<store>.journal`: what logins change (last accepted step, failure
 * count, lockout, used recovery/bypass codes) is appended here, one fsynced line per login,
 * instead of rewriting a store that may hold 100 000 users. The next full write of the store
 * folds the journal in and starts a new one.
 *
 * The first line names the store's epoch; a journal whose epoch is not the store's belongs to an
 * older store whose entries were already folded in (a crash between the two renames), and is
 * ignored. Each entry starts with a newline, so a line cut short by a crash is ended by the next
 * entry and skipped on reading, never glued to it.
 */

export interface Journal {
  /** The newest entry per user. */
  entries: Map<string, HotState>
  /** Whether the file exists and belongs to the store's epoch (else appending starts it anew). */
  current: boolean
  /** The bytes of the newest entry line of every user (what a compaction keeps). */
  live: number
}

/** Entries for `epoch`; `users` limits parsing to those names. */
export function readJournal(path: string, epoch: string | null, users?: Set<string>): Journal {
  const raw = epoch === null ? undefined : readPrivateFile(path)
  if (!raw) return {entries: new Map(), current: false, live: 0}
  const {entries, current, lines} = parseJournal(raw.toString('utf8'), path, epoch!, users)
  let live = 0
  for (const line of lines.values()) live += line.length
  return {entries, current, live}
}

/**
 * Parses journal text: a whole journal (its first line names `epoch`; another epoch: nothing
 * current), or, without `epoch`, a tail appended after what was already read (entries only).
 * `lines`: the newest entry line of each user (with its leading newline), of every user even
 * those `users` leaves unparsed, for the size of the live content.
 */
export function parseJournal(
  text: string,
  path: string,
  epoch?: string,
  users?: Set<string>,
): {entries: Map<string, HotState>; current: boolean; lines: Map<string, string>} {
  const entries = new Map<string, HotState>()
  const newest = new Map<string, string>()
  const lines = text.split('\n')
  if (epoch !== undefined && headerEpoch(lines[0]) !== epoch) return {entries, current: false, lines: newest}
  const r = new Reader(path)
  for (const line of epoch === undefined ? lines : lines.slice(1)) {
    if (line === '') continue
    const name = entryUser(line)
    if (users && !users.has(name ?? '')) {
      if (name !== undefined) newest.set(name, `\n${line}`)
      continue
    }
    let entry: {u?: unknown; s?: unknown}
    try {
      entry = JSON.parse(line)
    } catch {
      continue // cut short by a crash: never acknowledged
    }
    if (typeof entry.u !== 'string') continue
    entries.set(entry.u, readHotState(r, r.object(entry.s, `journal.${entry.u}`), `journal.${entry.u}`))
    newest.set(entry.u, `\n${line}`)
  }
  return {entries, current: true, lines: newest}
}

/** The user an entry line names, read without parsing the line (entries start `{"u":"NAME",`). */
function entryUser(line: string): string | undefined {
  if (!line.startsWith('{"u":"')) return undefined
  const end = line.indexOf('"', 6)
  return end < 0 ? undefined : line.slice(6, end) // usernames never hold a quote or a backslash
}

function headerEpoch(line: string | undefined): string | undefined {
  try {
    const h = JSON.parse(line ?? '')
    return typeof h?.epoch === 'string' ? h.epoch : undefined
  } catch {
    return undefined
  }
}

/** Starts an empty journal for `epoch` (atomically). */
export function resetJournal(path: string, epoch: string): void {
  atomicWrite(path, `${JSON.stringify({epoch})}\n`)
}

/** One entry, as appended: a newline first (a line cut short by a crash is ended by the next entry). */
export const entryLine = (user: string, state: HotState): string => `\n${JSON.stringify({u: user, s: state})}`

/** Appends one user's state and fsyncs; returns the journal's size. Call under the store lock. */
export function appendJournal(path: string, journal: Journal, epoch: string, user: string, state: HotState): number {
  if (!journal.current) resetJournal(path, epoch)
  const fd = openAppend(path)
  try {
    fs.writeSync(fd, entryLine(user, state))
    fs.fsyncSync(fd)
    return fs.fstatSync(fd).size
  } finally {
    fs.closeSync(fd)
  }
}

/** Below this size a journal is never compacted (rewriting it would cost more than reading it). */
export const JOURNAL_MIN_COMPACT = 64 << 10

/**
 * Whether a journal of `size` bytes whose live content (the newest entry of each user) is `live`
 * bytes is compacted now: once it is twice its live content. The rewrite costs as much as the
 * live content, and at least as many bytes were appended since the last one, so its cost per
 * login is bounded; and every reader reads at most twice the live content, however many logins
 * there were.
 */
export const shouldCompact = (size: number, live: number): boolean => size > Math.max(JOURNAL_MIN_COMPACT, 2 * live)

/** Rewrites the journal with only the newest entry per user (it grows by one line per login). */
export function compactJournal(path: string, epoch: string): number {
  const {entries} = readJournal(path, epoch)
  const text = [JSON.stringify({epoch}), ...[...entries].map(([u, s]) => JSON.stringify({u, s}))].join('\n')
  atomicWrite(path, text)
  return Buffer.byteLength(text)
}

/** A journal's live content kept in memory (a responder's): the newest entry line per user, and their size. */
export class JournalText {
  private readonly lines = new Map<string, string>()
  /** The bytes of the lines (their UTF-16 length: names and states are ASCII). */
  bytes = 0

  set(user: string, line: string): void {
    this.bytes += line.length - (this.lines.get(user)?.length ?? 0)
    this.lines.set(user, line)
  }

  clear(): void {
    this.lines.clear()
    this.bytes = 0
  }

  /** Writes these lines as the journal of `epoch` (atomically, fsynced); returns its size. */
  write(path: string, epoch: string): number {
    const text = `${JSON.stringify({epoch})}${[...this.lines.values()].join('')}`
    atomicWrite(path, text)
    return Buffer.byteLength(text)
  }
}
