import {execFileSync} from 'node:child_process'
import {existsSync} from 'node:fs'

/**
 * Whether the system clock is NTP-synchronised: true, false, or undefined when it cannot be
 * told. TOTP codes are only as good as the clock.
 */
export function clockSynced(): boolean | undefined {
  if (existsSync('/run/systemd/timesync/synchronized')) return true
  for (const [cmd, args, good] of [
    ['timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], /^yes/],
    ['chronyc', ['-n', 'tracking'], /Leap status\s*:\s*Normal/],
  ] as const) {
    try {
      const out = execFileSync(cmd, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000})
      return good.test(out)
    } catch {
      // not installed or not running: try the next way
    }
  }
  return undefined
}

/** The groups whose members administer the host (Debian's sudo, Red Hat's wheel, Ubuntu's old admin). */
export const ADMIN_GROUPS = ['sudo', 'wheel', 'admin'] as const

/**
 * The host's administrators as NSS sees them: root, and the members of the admin groups (listed
 * members and users whose primary group it is). `getent` answers for local files, LDAP and SSSD
 * alike; a group that does not exist adds no one.
 */
export function hostAdmins(): string[] {
  const admins = new Set(['root'])
  const getent = (...args: string[]): string => {
    try {
      return execFileSync('getent', args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000})
    } catch (error) {
      return String((error as {stdout?: string}).stdout ?? '') // exit 2: some key not found; the others are printed
    }
  }
  const gids = new Set<string>()
  for (const line of getent('group', ...ADMIN_GROUPS).split('\n')) {
    const [, , gid, members] = line.split(':')
    if (gid === undefined) continue
    gids.add(gid)
    for (const m of (members ?? '').split(',')) if (m) admins.add(m)
  }
  if (gids.size > 0)
    for (const line of getent('passwd').split('\n')) {
      const [name, , , gid] = line.split(':')
      if (name && gids.has(gid)) admins.add(name)
    }
  return [...admins]
}
