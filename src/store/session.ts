import {closeSync, openSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {ensureDir} from './files.js'

const readOr = (path: string, fallback: string): string => {
  try {
    return readFileSync(path, 'utf8').trim()
  } catch {
    return fallback
  }
}

/**
 * The login session a shell belongs to: systemd-logind's XDG_SESSION_ID when set, else the
 * kernel session id (field 6 of /proc/PID/stat) of the shell that runs us.
 */
export function loginSession(): string {
  if (process.env.XDG_SESSION_ID) return `logind-${process.env.XDG_SESSION_ID}`
  const stat = readOr(`/proc/${process.ppid}/stat`, '')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // state ppid pgrp session …
  return `sid-${fields[3] ?? process.ppid}`
}

/**
 * Records that `user` was invited in `session`; false when that already happened. Markers live in
 * a runtime directory that is emptied at reboot, and carry the boot id so that ids reused after a
 * reboot do not match.
 */
export function markPrompted(user: string, session: string): boolean {
  const uid = process.getuid?.() ?? 0
  const dir = process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'tfactl') : uid === 0 ? '/run/tfactl' : join(tmpdir(), `tfactl-${uid}`)
  ensureDir(dir)
  const boot = readOr('/proc/sys/kernel/random/boot_id', 'unknown-boot')
  const marker = join(dir, `prompted-${user}-${boot}-${session.replace(/[^A-Za-z0-9._-]/g, '_')}`)
  try {
    closeSync(openSync(marker, 'wx', 0o600))
    return true
  } catch {
    return false
  }
}
