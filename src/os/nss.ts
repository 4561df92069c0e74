import {execFileSync} from 'node:child_process'
import {usageError} from '../core/errors.js'
import {checkGroupName, groupUsers, parseGroupLine} from '../core/groups.js'
import {quote} from '../core/validate.js'

/** The output of `getent DATABASE [KEY]` (no shell); undefined when the key is not found (exit 2). */
function getent(args: string[]): string | undefined {
  try {
    return execFileSync('getent', args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000, maxBuffer: 256 << 20})
  } catch (error) {
    const e = error as {status?: number; code?: string}
    if (e.status === 2) return undefined
    throw usageError(`cannot ask NSS (getent ${args[0]}): ${e.code ?? `exit ${e.status}`}`)
  }
}

/**
 * The members of a Unix group as NSS sees them (files, LDAP, SSSD, winbind alike): the group's
 * member list plus every user whose primary group it is (from `getent passwd`, which lists what
 * NSS enumerates). An unknown group → exit 2.
 */
export function nssGroupUsers(name: string): string[] {
  checkGroupName(name)
  const line = getent(['group', '--', name])
  const group = line === undefined ? undefined : parseGroupLine(line.split('\n')[0])
  if (!group) throw usageError(`no group ${quote(name)} (getent group finds none)`)
  return groupUsers(group, getent(['passwd']) ?? '')
}
