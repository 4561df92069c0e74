import {usageError} from './errors.js'
import {checkUsername, quote} from './validate.js'

// A group name as NSS may know it (also "Domain Users" from Active Directory): no ':' or ','
// (the fields of a group line), no control characters, not starting with '-' (an option) and
// not all digits (getent would take it for a GID).
const GROUP = /^[^\p{C}:,\s-][^\p{C}:,]{0,255}$/u

export function checkGroupName(name: string): string {
  if (!GROUP.test(name) || /^\d+$/.test(name) || name !== name.trim())
    throw usageError(`invalid group name ${quote(name)}: give a group's name (no ':' or ',', not a number)`)
  return name
}

export interface GroupEntry {
  name: string
  gid: number
  members: string[]
}

/** One `getent group` line: `name:password:gid:member,member`. */
export function parseGroupLine(line: string): GroupEntry | undefined {
  const fields = line.replace(/\r?\n$/, '').split(':')
  if (fields.length < 4 || !/^\d+$/.test(fields[2])) return undefined
  return {name: fields[0], gid: Number(fields[2]), members: fields[3] === '' ? [] : fields[3].split(',').map((m) => m.trim())}
}

/** The users whose primary group is `gid`, from `getent passwd` lines (`name:password:uid:gid:…`). */
export function primaryMembers(passwd: string, gid: number): string[] {
  const out: string[] = []
  for (const line of passwd.split('\n')) {
    const fields = line.split(':')
    if (fields.length >= 4 && fields[3] === String(gid)) out.push(fields[0])
  }
  return out
}

/**
 * A group's users as NSS sees them: the listed members, then the users whose primary group it
 * is, each once, in that order. Every name must be one tfactl accepts, or nothing is enrolled.
 */
export function groupUsers(group: GroupEntry, passwd: string): string[] {
  const names = [...new Set([...group.members, ...primaryMembers(passwd, group.gid)])]
  for (const name of names) checkUsername(name, `group ${quote(group.name)}: member `)
  return names
}

/** What groupMembers asks of NSS (src/os/nss.ts; a table in tests). */
export interface GroupSource {
  group(name: string): string | undefined
  passwd(): string
}

/**
 * The members of a Unix group as NSS sees them: the group's member list plus every user whose
 * primary group it is (from the passwd entries NSS enumerates). A bad name or an unknown group → exit 2.
 */
export function groupMembers(name: string, nss: GroupSource): string[] {
  checkGroupName(name)
  const line = nss.group(name)
  const group = line === undefined ? undefined : parseGroupLine(line)
  if (!group) throw usageError(`no group ${quote(name)} (getent group finds none)`)
  return groupUsers(group, nss.passwd())
}
