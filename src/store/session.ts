import {closeSync, constants, lstatSync, openSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {ensureDir} from '../os/files.js'

const readOr = (path: string, fallback: string): string => {
  try {
    return readFileSync(path, 'utf8').trim()
  } catch {
    return fallback
  }
}

/** The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, … */
const statFields = (pid: number): string[] => {
  const stat = readOr(`/proc/${pid}/stat`, '')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}
const commandName = (pid: number): string => readOr(`/proc/${pid}/comm`, '')

/**
 * The login session a shell belongs to: systemd-logind's XDG_SESSION_ID when set, else the
 * kernel session id of the nearest ancestor that is not sudo (sudo may start a session of its
 * own for the command it runs).
 */
export function loginSession(): string {
  if (process.env.XDG_SESSION_ID) return `logind-${process.env.XDG_SESSION_ID}`
  let pid = process.ppid
  for (let hops = 0; hops < 8 && commandName(pid) === 'sudo'; hops++) pid = Number(statFields(pid)[1]) || 1
  return `sid-${statFields(pid)[3] ?? pid}`
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
  // In a shared /tmp another user may have made the directory first (or a link in its place):
  // markers there could be planted to silence the invitation. Only a directory of our own,
  // writable by us alone, is used; otherwise the user is invited again.
  const st = lstatSync(dir)
  if (!st.isDirectory() || st.uid !== uid || st.mode & 0o022) return true
  const boot = readOr('/proc/sys/kernel/random/boot_id', 'unknown-boot')
  const marker = join(dir, `prompted-${user}-${boot}-${session.replace(/[^A-Za-z0-9._-]/g, '_')}`)
  try {
    closeSync(openSync(marker, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600))
    return true
  } catch {
    return false
  }
}
