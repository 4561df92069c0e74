import * as fs from 'node:fs'
import {checkPrivateFile, ensureDir} from './files.js'
import {dirname} from 'node:path'

/** One line of `audit.log`. Never a secret or a code: only who, what, whom and the outcome. */
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

/** Appends one JSON line (O_APPEND: concurrent writers never interleave within a line). */
export function appendAudit(path: string, event: AuditEvent): void {
  ensureDir(dirname(path))
  checkPrivateFile(path)
  const fd = fs.openSync(path, 'a', 0o600)
  try {
    fs.writeSync(fd, `${JSON.stringify(event)}\n`)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** Records one run of `command`; returns a warning instead of failing the command. */
export function recordEvent(path: string, command: string, user: string | null, outcome: {outcome: string; reason: string | null}): string | undefined {
  try {
    appendAudit(path, {
      time: new Date().toISOString(),
      actor: {uid: process.getuid?.() ?? -1, sudoUser: process.env.SUDO_USER || null},
      command,
      user,
      ...outcome,
    })
    return undefined
  } catch (error) {
    return `could not write the audit log: ${(error as Error).message}`
  }
}

export function readAudit(path: string): AuditEvent[] {
  if (!checkPrivateFile(path)) return []
  return fs
    .readFileSync(path, 'utf8')
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
