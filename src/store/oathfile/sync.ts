import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import {basename, dirname, join} from 'node:path'
import {EXIT, storeError, TfaError} from '../../core/errors.js'
import type {Doc} from '../../core/model.js'
import {findPamOath, foreignLine, importReplay, OATH_HEADER, type OathEntry, type OathUser, oathUsers, renderUsersFile} from '../../core/oath.js'
import {fsyncDir} from '../files.js'
import {isRoot, readUsersFile, TEMP_MARK, type UsersFile, warn} from './file.js'
import {removeStalePamNew, UsersFileLock} from './lock.js'
import {waitForStaleReaders} from './readers.js'

// Phase 3 (liboath: write `.new`, fsync, rename): the users file rewritten from the store, under
// the lock, inside the store's own update.

/**
 * Replaces the users file with `text`: temp file in the same directory (0600, root-owned when
 * run as root), fsync, rename, fsync the directory. Call holding the lock.
 */
export function replaceUsersFile(path: string, text: string): void {
  const dir = dirname(path)
  const name = basename(path)
  // Temp files a killed tfactl left: ours alone, and only touched under the lock.
  for (const entry of fs.readdirSync(dir)) if (entry.startsWith(`${name}${TEMP_MARK}`)) fs.rmSync(join(dir, entry), {force: true})
  const temp = join(dir, `${name}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`)
  const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
  try {
    try {
      fs.writeFileSync(fd, text)
      fs.fchmodSync(fd, 0o600)
      if (isRoot()) fs.fchownSync(fd, 0, 0)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(temp, path)
  } catch (error) {
    fs.rmSync(temp, {force: true})
    throw error
  }
  fsyncDir(dir)
}

/** Whether the file on disk must be rewritten to become `text` (content, mode or owner differ). */
const needsWrite = (file: UsersFile | undefined, text: string): boolean =>
  !file || file.text !== text || file.mode !== 0o600 || (isRoot() && file.uid !== 0)

/** What an update did to the users file. */
export interface SyncReport {
  path: string
  /** Users who have a line in the file. */
  users: string[]
  /** Whether the file was written. */
  changed: boolean
  /** Users whose replay state pam_oath had recorded was copied into the store. */
  imported: string[]
}

/**
 * A users file tfactl did not write (no header) may list users the store does not know; taking
 * it over would drop their lines, and pam_oath would let them in with the password alone.
 */
function refuseForeignUsers(file: UsersFile | undefined, users: OathUser[]): void {
  if (!file || file.text.startsWith(OATH_HEADER)) return
  const kept = new Set(users.map((u) => u.user))
  const dropped = [...new Set(file.entries.map((e) => e.user))].filter((u) => !kept.has(u))
  if (dropped.length > 0)
    throw new TfaError(
      `${file.path} was not written by tfactl and lists users who would lose 2FA over SSH (${dropped.join(', ')}), so nothing was changed: ` +
        `import them first (tfactl user:secret:import --from users.oath ${file.path}), or move the file away`,
      EXIT.usage,
      'oath_foreign',
    )
}

/**
 * Before a file becomes the users file (and is replaced by one holding secrets in clear): it
 * must not be one of the store's own files (by name, or the same inode under another name),
 * and it must be empty or a pam_oath users file, never a PAM config, /etc/passwd or a key.
 */
function refuseTakeover(path: string, file: UsersFile | undefined, protect: readonly string[]): void {
  const real = (p: string): string => {
    try {
      return join(fs.realpathSync(dirname(p)), basename(p))
    } catch {
      return p
    }
  }
  const target = real(path)
  let dir: fs.Stats | undefined
  try {
    dir = fs.statSync(dirname(path))
  } catch {
    // no directory: creating the lock says so
  }
  const me = process.getuid?.() ?? 0
  if (dir && ((dir.uid !== me && dir.uid !== 0) || dir.mode & 0o022))
    throw new TfaError(
      `${dirname(path)} can be written by another user (uid ${dir.uid}, mode ${(dir.mode & 0o7777).toString(8)}), who could swap the users file or its lock: choose a directory only root can write, e.g. /etc/users.oath`,
      EXIT.usage,
      'oath_unsafe_dir',
    )
  for (const own of protect) {
    let same = real(own) === target
    if (!same && file) {
      try {
        const st = fs.statSync(own)
        same = st.dev === file.dev && st.ino === file.ino
      } catch {
        // that side file does not exist
      }
    }
    if (same) throw new TfaError(`${path} is one of the store's own files (${own}): the users file needs a path of its own, e.g. /etc/users.oath`, EXIT.usage, 'oath_foreign')
  }
  const line = file ? foreignLine(file.text) : 0
  if (line > 0)
    throw new TfaError(
      `${path} is not a pam_oath users file (line ${line} is not an entry or a comment), and tfactl only takes over an empty file or a users file: nothing was changed, choose another path`,
      EXIT.usage,
      'oath_foreign',
    )
}

/** PAM files that still name `usersFile` in a pam_oath line. */
export function pamFilesNaming(usersFile: string, pamDir = '/etc/pam.d'): string[] {
  let names: string[]
  try {
    names = fs.readdirSync(pamDir)
  } catch {
    return []
  }
  return names
    .map((n) => join(pamDir, n))
    .filter((p) => {
      try {
        return fs
          .readFileSync(p, 'utf8')
          .split('\n')
          .some((l) => findPamOath(l)?.usersFile === usersFile)
      } catch {
        return false
      }
    })
}

/**
 * The users file moved: the old one must not keep the secrets in clear. It is removed (under
 * its lock), not emptied: pam_oath fails a login when its users file is missing (fail closed),
 * but an empty file answers "user unknown", which the recommended PAM line ignores (fail open).
 * A PAM file still naming the old path then refuses every password login: say so.
 */
async function retireOldUsersFile(old: string): Promise<void> {
  try {
    const lock = await UsersFileLock.acquire(old)
    try {
      fs.rmSync(old, {force: true})
      fsyncDir(dirname(old))
    } finally {
      lock.release()
    }
  } catch (error) {
    warn(`the old users file ${old} still holds secrets in clear and could not be removed (${(error as Error).message}): remove it`)
  }
  const still = pamFilesNaming(old)
  if (still.length > 0) warn(`${still.join(', ')} still name${still.length === 1 ? 's' : ''} the old users file ${old}, which is gone: pam_oath refuses every password login there until it names the new one (tfactl ssh:config)`)
}

/** The users file held under its lock for the length of one store update. */
class Session {
  private constructor(readonly path: string, private readonly lock: UsersFileLock, readonly file: UsersFile | undefined) {}

  static async open(path: string): Promise<Session> {
    const lock = await UsersFileLock.acquire(path)
    try {
      removeStalePamNew(path)
      return new Session(path, lock, readUsersFile(path))
    } catch (error) {
      lock.release()
      throw error
    }
  }

  get entries(): OathEntry[] {
    return this.file?.entries ?? []
  }

  release(): void {
    this.lock.release()
  }
}

/**
 * The store's update hook, run under the store lock. With a users file configured it holds
 * the file's lock from before `run` until the file is written, so that:
 * - replay state pam_oath recorded is in the document before `run` decides anything (a code
 *   used over SSH is refused by login:check, and kept when lines are dropped);
 * - a user who cannot be expressed in the file stops the update before anything is saved;
 * - the file is rewritten from the saved document, keeping pam_oath's replay fields (and
 *   writing the store's, e.g. a code login:check accepted, so sshd refuses it).
 * Without a users file it only runs `run` and `save`: no extra file I/O.
 */
export async function syncUsersFile<T>(doc: Doc, run: () => Promise<T>, save: () => Promise<void>, protect: readonly string[] = []): Promise<{result: T; report?: SyncReport}> {
  let session: Session | undefined
  const configured = doc.settings.oathFile
  try {
    const imported = new Set<string>()
    if (doc.settings.oathFile) {
      session = await Session.open(doc.settings.oathFile)
      for (const user of importReplay(doc, session.entries, Date.now())) imported.add(user)
    }
    const result = await run()
    const path = doc.settings.oathFile
    if (path !== (session?.path ?? null)) {
      session?.release()
      session = undefined
      if (path) {
        refuseTakeover(path, undefined, protect) // by name, before its lock is even created
        session = await Session.open(path)
        for (const user of importReplay(doc, session.entries, Date.now())) imported.add(user)
      }
    }
    if (!session || !path) {
      await save()
      return {result}
    }
    const users = oathUsers(doc) // fails closed, before anything is saved
    if (path !== configured) {
      refuseTakeover(path, session.file, protect)
      refuseForeignUsers(session.file, users)
    }
    const text = renderUsersFile(users, session.entries, Date.now(), doc.settings.window)
    await save()
    const changed = needsWrite(session.file, text)
    if (changed) {
      try {
        replaceUsersFile(path, text)
      } catch (error) {
        const reason = error instanceof TfaError ? error.message : `${(error as NodeJS.ErrnoException).code ?? ''} ${(error as Error).message}`.trim()
        throw storeError(`the store was updated, but the pam_oath users file ${path} could not be written (${reason}): fix that and run tfactl ssh:sync`)
      }
      const left = await waitForStaleReaders(path)
      if (left.length > 0)
        warn(`pam_oath process(es) ${left.join(', ')} still hold an older copy of ${path} and may write it back: check with tfactl ssh:sync --check`)
    }
    if (configured && path !== configured) {
      session.release()
      session = undefined
      await retireOldUsersFile(configured)
    }
    return {result, report: {path, users: users.map((u) => u.user), changed, imported: [...imported]}}
  } finally {
    session?.release()
  }
}

