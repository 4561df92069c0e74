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
}

/** Entries for `epoch`; `users` limits parsing to those names. */
export function readJournal(path: string, epoch: string | null, users?: Set<string>): Journal {
  const out = new Map<string, HotState>()
  const raw = epoch === null ? undefined : readPrivateFile(path)
  if (!raw) return {entries: out, current: false}
  const lines = raw.toString('utf8').split('\n')
  if (headerEpoch(lines[0]) !== epoch) return {entries: out, current: false}
  const r = new Reader(path)
  for (const line of lines.slice(1)) {
    if (line === '') continue
    if (users && !users.has(entryUser(line) ?? '')) continue
    let entry: {u?: unknown; s?: unknown}
    try {
      entry = JSON.parse(line)
    } catch {
      continue // cut short by a crash: never acknowledged
    }
    if (typeof entry.u !== 'string') continue
    out.set(entry.u, readHotState(r, r.object(entry.s, `journal.${entry.u}`), `journal.${entry.u}`))
  }
  return {entries: out, current: true}
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

/** Appends one user's state and fsyncs; returns the journal's size. Call under the store lock. */
export function appendJournal(path: string, journal: Journal, epoch: string, user: string, state: HotState): number {
  if (!journal.current) resetJournal(path, epoch)
  const fd = openAppend(path)
  try {
    fs.writeSync(fd, `\n${JSON.stringify({u: user, s: state})}`)
    fs.fsyncSync(fd)
    return fs.fstatSync(fd).size
  } finally {
    fs.closeSync(fd)
  }
}

/** Rewrites the journal with only the newest entry per user (it grows by one line per login). */
export function compactJournal(path: string, epoch: string): number {
  const {entries} = readJournal(path, epoch)
  const text = [JSON.stringify({epoch}), ...[...entries].map(([u, s]) => JSON.stringify({u, s}))].join('\n')
  atomicWrite(path, text)
  return Buffer.byteLength(text)
}
