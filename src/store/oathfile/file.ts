import * as fs from 'node:fs'
import {basename, dirname} from 'node:path'
import {storeError} from '../../core/errors.js'
import {parseUsersFile, type OathEntry} from '../../core/oath.js'
import {accessError} from '../../os/files.js'
import {notice} from '../notices.js'

// The disk side of the pam_oath users file. pam_oath (liboath usersfile.c, Debian 12) reads the
// file WITHOUT a lock, checks the code, then creates `<file>.lock` with O_CREAT|O_EXCL (if it
// exists the login fails at once), takes a blocking fcntl write lock on it, writes
// `<file>.new` (O_EXCL) from the copy it read, fsyncs, renames it over the file and unlinks
// the lock. tfactl takes the very same lock, writes through a temp name of its own (never
// `.new`, which would make pam_oath fail), and holds the lock until no pam_oath process still
// has an older copy open: such a process read before the rename and would otherwise write its
// stale copy back over ours; while the lock is held it cannot, and its login fails instead.

// This folder follows liboath's phases: lock.ts (the `.lock` protocol), readers.ts (pam_oath
// processes holding an older copy), sync.ts (read, render, replace under the store's update).

export const TEMP_MARK = '.tfactl-tmp-'
export const LOCK_MARK = /^tfactl (\d+)\n?$/

export const errno = (error: unknown): string | undefined => (error as NodeJS.ErrnoException).code
export const isRoot = (): boolean => (process.getuid?.() ?? -1) === 0

/** A warning for the front end to show (storage prints nothing: ../notices.ts). */
export const warn = notice

export interface UsersFile {
  path: string
  /** The file's bytes: a one-user change searches and patches these, never a decoded copy. */
  bytes: Buffer
  /** The bytes as text, decoded on first use (doctor, a takeover check, a whole render). */
  readonly text: string
  readonly entries: OathEntry[]
  dev: number
  ino: number
  mode: number
  uid: number
  /** Which file this is and when it last changed (device, inode, size, mtime and ctime in ns). */
  stamp: string
}

/** `st` as UsersFile.stamp: any write, rename or replacement of the file changes it. */
export const statStamp = (st: fs.BigIntStats): string => [st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].join(':')

/** The users file as it is now, or undefined when there is none. Never follows a symlink. */
export function readUsersFile(path: string): UsersFile | undefined {
  let fd: number
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  } catch (error) {
    if (errno(error) === 'ENOENT') return undefined
    if (errno(error) === 'ELOOP') throw storeError(`${path} is a symbolic link; tfactl writes the users file itself: use the real path with --oath-file`)
    throw accessError(path, error)
  }
  try {
    const st = fs.fstatSync(fd, {bigint: true})
    if (!st.isFile()) throw storeError(`${path} is not a regular file`)
    const bytes = fs.readFileSync(fd)
    let text: string | undefined
    let entries: OathEntry[] | undefined
    return {
      path,
      bytes,
      get text() {
        return (text ??= bytes.toString('utf8'))
      },
      // parsed on first use: a login reads only its own user's line
      get entries() {
        return (entries ??= parseUsersFile(this.text))
      },
      dev: Number(st.dev),
      ino: Number(st.ino),
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      stamp: statStamp(st),
    }
  } finally {
    fs.closeSync(fd)
  }
}

/** The lock and temp files pam_oath and tfactl leave when interrupted. */
export function leftovers(path: string): {lock: boolean; pamNew: boolean; temps: string[]} {
  const dir = dirname(path)
  const name = basename(path)
  let entries: string[] = []
  try {
    entries = fs.readdirSync(dir)
  } catch {
    // no directory: nothing left over
  }
  return {
    lock: entries.includes(`${name}.lock`),
    pamNew: entries.includes(`${name}.new`),
    temps: entries.filter((e) => e.startsWith(`${name}${TEMP_MARK}`)),
  }
}
