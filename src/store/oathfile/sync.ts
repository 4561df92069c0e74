import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import {basename, dirname, join} from 'node:path'
import {EXIT, storeError, TfaError} from '../../core/errors.js'
import type {Doc, Settings, UserRecord} from '../../core/model.js'
import {
  entriesByUser,
  findPamOath,
  foreignLine,
  importReplay,
  importUserReplay,
  OATH_HEADER,
  type OathEntry,
  oathLine,
  parseOathLine,
  parseUsersFile,
  oathUnsupported,
  oathUser,
  type OathUser,
  oathUsers,
  renderUsersFile,
} from '../../core/oath.js'
import {fsyncDir, type UnsafeDir, unsafeDir} from '../../os/files.js'
import {isRoot, readUsersFile, statStamp, TEMP_MARK, type UsersFile, warn} from './file.js'
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
const needsWrite = (file: UsersFile | undefined, text: string): boolean => !file || file.text !== text || file.mode !== 0o600 || (isRoot() && file.uid !== 0)

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
export function refuseTakeover(path: string, file: UsersFile | undefined, protect: readonly string[]): void {
  const real = (p: string): string => {
    try {
      return join(fs.realpathSync(dirname(p)), basename(p))
    } catch {
      return p
    }
  }
  const target = real(path)
  let unsafe: UnsafeDir | undefined
  try {
    unsafe = fs.existsSync(dirname(path)) ? unsafeDir(dirname(path)) : undefined
  } catch {
    // not a directory, or unreadable: creating the lock says so
  }
  if (unsafe)
    throw new TfaError(
      `${unsafe.own ? dirname(path) : `${dirname(path)} is inside ${unsafe.path}, which`} ${unsafe.why}, so another user could swap the users file or its lock: choose a directory only root can write, e.g. /etc/users.oath`,
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
    if (same)
      throw new TfaError(
        `${path} is one of the store's own files (${own}): the users file needs a path of its own, e.g. /etc/users.oath`,
        EXIT.usage,
        'oath_foreign',
      )
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
  if (still.length > 0)
    warn(
      `${still.join(', ')} still name${still.length === 1 ? 's' : ''} the old users file ${old}, which is gone: pam_oath refuses every password login there until it names the new one (tfactl ssh:config)`,
    )
}

/** The users file held under its lock for the length of one store update. */
class Session {
  private grouped?: Map<string, OathEntry[]>
  private constructor(
    readonly path: string,
    private readonly lock: UsersFileLock,
    readonly file: UsersFile | undefined,
  ) {}

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

  /** The entries by user: users are paired with their lines through this, never by scanning. */
  get byUser(): Map<string, OathEntry[]> {
    return (this.grouped ??= entriesByUser(this.entries))
  }

  private finder?: LineFinder
  /** One user's lines with their places in the text (see LineFinder). */
  linesOf(user: string): FoundLine[] {
    return (this.finder ??= new LineFinder(this.file?.text ?? '')).get(user)
  }

  release(): void {
    this.lock.release()
  }
}

/**
 * What the store decides in a users file: each line's type, user, password field and secret
 * (pam_oath's trailing fields aside, which logins change), comments included. The store records
 * the digest of the file it wrote; while the file still has that digest, it is in step with the
 * store and an update only rewrites the lines of the users it changed (a crash between writing
 * the store and the file, or a hand edit, makes them differ: the file is then rendered whole).
 *
 * The digest is a sum over lines (a count and two 32-bit sums of each line's hashes), so that a
 * patch that replaces a few lines gets the new digest from the old one by taking those lines out
 * and putting the new ones in, without going over the rest of the file again.
 */
export function usersFileDigest(text: string): string {
  return digestOf(lineSum(text))
}

/** Bytes of users files gone over to work out digests: counted for tests (test/unit/scale-work.test.ts), never timed. */
export const digestWork = {bytes: 0}

/** The numbers behind a digest: lines, and the two sums of their hashes (mod 2^32). */
interface LineSum {
  lines: number
  a: number
  b: number
}

const DIGEST = 'lines1'
const digestOf = (s: LineSum): string => `${DIGEST}:${s.lines}:${s.a.toString(16)}:${s.b.toString(16)}`

function parseDigest(digest: string): LineSum | undefined {
  const [kind, lines, a, b] = digest.split(':')
  return kind === DIGEST && b !== undefined ? {lines: Number(lines), a: Number.parseInt(a, 16), b: Number.parseInt(b, 16)} : undefined
}

/** murmur3's finaliser: spreads a line's hash over all 32 bits before it is summed. */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/**
 * Adds (sign 1) or takes out (sign -1) the lines of `text` to `sum`. A line counts by its first
 * four blank-separated fields joined by tabs (one pass over the bytes, two FNV-style hashes).
 */
function lineSum(text: string, sum: LineSum = {lines: 0, a: 0, b: 0}, sign = 1): LineSum {
  const src = Buffer.from(text, 'utf8')
  digestWork.bytes += src.length
  const blank = (c: number) => c === 0x20 || c === 0x09 || c === 0x0d
  let {lines, a, b} = sum
  for (let i = 0; i < src.length; i++) {
    let ha = 0x811c9dc5
    let hb = 0x9747b28c
    while (i < src.length && blank(src[i])) i++
    for (let field = 0; field < 4 && i < src.length && src[i] !== 0x0a; field++) {
      if (field > 0) {
        ha = Math.imul(ha ^ 0x09, 0x01000193)
        hb = Math.imul(hb ^ 0x09, 0x5bd1e995)
      }
      for (; i < src.length && src[i] !== 0x0a && !blank(src[i]); i++) {
        ha = Math.imul(ha ^ src[i], 0x01000193)
        hb = Math.imul(hb ^ src[i], 0x5bd1e995)
      }
      while (i < src.length && blank(src[i])) i++
    }
    while (i < src.length && src[i] !== 0x0a) i++
    lines += sign
    a = (a + sign * mix(ha)) >>> 0
    b = (b + sign * mix(hb)) >>> 0
  }
  return {lines, a, b}
}

/** A user's line and where it is in the file's text ([start, end), without its newline). */
interface FoundLine {
  entry: OathEntry
  start: number
  end: number
}

/** One user's lines, found by searching the text for the name (no parse of the other lines). */
function findUserLines(text: string, user: string): FoundLine[] {
  const found: FoundLine[] = []
  for (let from = 0; ; ) {
    const at = text.indexOf(user, from)
    if (at < 0) return found
    const start = text.lastIndexOf('\n', at) + 1
    const nl = text.indexOf('\n', at)
    const end = nl < 0 ? text.length : nl
    const entry = parseOathLine(text.slice(start, end), 0)
    if (entry?.user === user) found.push({entry, start, end})
    from = end + 1
  }
}

/**
 * Users' lines in a users file: the first few users are found by searching the text (a login,
 * a one-user change: no parse of the other lines); past that, the file is indexed once by user
 * (a bulk change), so that pairing users with lines never scans once per user.
 */
class LineFinder {
  private index?: Map<string, FoundLine[]>
  private searches = 0
  constructor(private readonly text: string) {}

  get(user: string): FoundLine[] {
    if (!this.index && ++this.searches <= 16) return findUserLines(this.text, user)
    this.index ??= this.indexAll()
    return this.index.get(user) ?? []
  }

  private indexAll(): Map<string, FoundLine[]> {
    const index = new Map<string, FoundLine[]>()
    for (let start = 0; start < this.text.length; ) {
      const nl = this.text.indexOf('\n', start)
      const end = nl < 0 ? this.text.length : nl
      const entry = parseOathLine(this.text.slice(start, end), 0)
      if (entry) index.set(entry.user, [...(index.get(entry.user) ?? []), {entry, start, end}])
      start = end + 1
    }
    return index
  }
}

/** Where a new line for `user` goes in a file sorted by user (binary search over its lines). */
function insertionPoint(text: string, user: string): number {
  let lo = 0
  let hi = text.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const start = text.lastIndexOf('\n', mid - 1) + 1
    const nl = text.indexOf('\n', mid)
    const end = nl < 0 ? text.length : nl
    const entry = parseOathLine(text.slice(start, end), 0)
    if (!entry || entry.user < user)
      lo = end + 1 // the header and comments come first
    else hi = start
  }
  return Math.min(lo, text.length)
}

/** What the store's update path tells the sync (src/store/file/store.ts); without it every sync renders the whole file. */
export interface SyncTracking {
  /** The digest of the users file the store recorded with its last write (null: none). */
  digest: string | null
  /** The users whose record the update set, deleted or changed. */
  changedUsers(): Set<string>
  /** Runs `hook` on each record as the update first reads it. */
  onLoad(hook: (user: string, record: UserRecord) => void): void
  /**
   * Where the store keeps the stamp of the users file it last wrote (`digest stamp`, see
   * UsersFile.stamp): while the file on disk still has that stamp, nothing has touched it since,
   * and its digest need not be worked out again. Any write (a pam_oath login) changes the stamp.
   */
  stamp?: {read(): string | undefined; write(value: string): void}
}

/** The settings that decide who is in the file and how their lines are made. */
const fileSettings = (s: Settings): string => JSON.stringify([s.enabled, s.ssh, s.oathFile, s.window])

/**
 * The users file with the lines of `changed` users made anew from the store; every other line
 * (header, comments, other users with pam_oath's replay fields) is carried over as it is, in one
 * copy of the text with those lines replaced. New users' lines go where the sorted order puts them.
 * The new digest comes from `digest` (the file's) with the replaced lines taken out and the new
 * ones put in.
 */
function patchUsersFile(doc: Doc, session: Session, changed: Set<string>, now: number, digest: string): {text: string; digest: string} {
  const on = doc.settings.enabled && doc.settings.ssh
  const text = session.file!.text
  const edits: Array<{start: number; end: number; line: string; user: string}> = []
  const problems: string[] = []
  for (const user of changed) {
    const u = on ? oathUser(user, doc.users.get(user)) : undefined
    if (typeof u === 'string') {
      problems.push(u)
      continue
    }
    const found = session.linesOf(user)
    const line = u
      ? `${oathLine(
          u,
          found.map((f) => f.entry),
          now,
          doc.settings.window,
        )}\n`
      : ''
    // the user's first line is replaced, any other goes (with its newline)
    for (const [i, f] of found.entries()) edits.push({start: f.start, end: Math.min(f.end + 1, text.length), line: i === 0 ? line : '', user})
    if (found.length === 0 && line) {
      const at = insertionPoint(text, user)
      edits.push({start: at, end: at, line: at === text.length && text !== '' && !text.endsWith('\n') ? `\n${line}` : line, user})
    }
  }
  if (problems.length > 0) throw oathUnsupported(problems)
  edits.sort((a, b) => a.start - b.start || (a.user < b.user ? -1 : 1))
  const out: string[] = []
  let at = 0
  for (const e of edits) {
    out.push(text.slice(at, e.start), e.line)
    at = e.end
  }
  out.push(text.slice(at))
  const patched = out.join('')
  let sum = parseDigest(digest)
  // a file without its last newline gets one before an appended line: counted from the text
  if (!sum || (text !== '' && !text.endsWith('\n'))) return {text: patched, digest: usersFileDigest(patched)}
  for (const e of edits) sum = lineSum(e.line, lineSum(text.slice(e.start, e.end), sum, -1))
  return {text: patched, digest: digestOf(sum)}
}

/**
 * Records the stamp of the users file the store now names (`file`, or the one just written):
 * the next update trusts it without working out its digest while the stamp still matches.
 * Best effort: without a stamp the next update works the digest out.
 */
function stampUsersFile(path: string, digest: string, file: UsersFile | undefined, stamp: NonNullable<SyncTracking['stamp']>): void {
  try {
    const value = `${digest} ${file?.stamp ?? statStamp(fs.lstatSync(path, {bigint: true}))}`
    if (stamp.read() !== value) stamp.write(value)
  } catch {
    // no stamp: the digest is worked out next time
  }
}

/** Writes the users file; a failure says the store was updated already. */
async function writeUsersFile(path: string, text: string): Promise<void> {
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

/**
 * The store's update hook, run under the store lock. With a users file configured it holds
 * the file's lock from before `run` until the file is written, so that:
 * - replay state pam_oath recorded is in the document before `run` decides anything (a code
 *   used over SSH is refused by login:check, and kept when lines are dropped);
 * - a user who cannot be expressed in the file stops the update before anything is saved;
 * - the file is rewritten from the saved document, keeping pam_oath's replay fields (and
 *   writing the store's, e.g. a code login:check accepted, so sshd refuses it).
 * While the file is in step with the store (see usersFileDigest) and the update changes no
 * setting the file depends on, only the changed users' records are read and their lines made
 * anew: the replay state of a user is imported as their record is first read, and every other
 * line is copied as it is. Otherwise the whole file is rendered from every record.
 * Without a users file it only runs `run` and `save`: no extra file I/O.
 * `save` is given the digest of the file about to be written, for the store to record.
 */
export async function syncUsersFile<T>(
  doc: Doc,
  run: () => Promise<T>,
  save: (digest?: string | null) => Promise<void>,
  protect: readonly string[] = [],
  tracking?: SyncTracking,
): Promise<{result: T; report?: SyncReport}> {
  let session: Session | undefined
  const configured = doc.settings.oathFile
  const settingsBefore = fileSettings(doc.settings)
  let inStep = false
  try {
    const imported = new Set<string>()
    if (doc.settings.oathFile) {
      session = await Session.open(doc.settings.oathFile)
      const file = session.file
      // untouched since the store wrote it (its stamp), or still what the store wrote (its digest)
      inStep =
        tracking?.digest != null &&
        file !== undefined &&
        (tracking.stamp?.read() === `${tracking.digest} ${file.stamp}` || tracking.digest === usersFileDigest(file.text))
      const now = Date.now()
      if (inStep) {
        const open = session
        tracking!.onLoad((user, record) => {
          if (
            importUserReplay(
              record,
              open.linesOf(user).map((f) => f.entry),
              now,
              doc.settings.window,
            )
          )
            imported.add(user)
        })
      } else for (const user of importReplay(doc, session.byUser, now)) imported.add(user)
    }
    const result = await run()
    const path = doc.settings.oathFile
    if (path !== (session?.path ?? null)) {
      session?.release()
      session = undefined
      inStep = false
      if (path) {
        refuseTakeover(path, undefined, protect) // by name, before its lock is even created
        session = await Session.open(path)
        for (const user of importReplay(doc, session.byUser, Date.now())) imported.add(user)
      }
    }
    if (!session || !path) {
      await save()
      return {result}
    }
    let text: string
    let digest: string | undefined
    if (inStep && fileSettings(doc.settings) === settingsBefore)
      ({text, digest} = patchUsersFile(doc, session, tracking!.changedUsers(), Date.now(), tracking!.digest!))
    else {
      // Lines are dropped or made anew from every record: first the replay state of users whose
      // records were not read yet (those read got it as they were read).
      if (inStep) for (const user of importReplay(doc, session.byUser, Date.now())) imported.add(user)
      const users = oathUsers(doc) // fails closed, before anything is saved
      if (path !== configured) {
        refuseTakeover(path, session.file, protect)
        refuseForeignUsers(session.file, users)
      }
      text = renderUsersFile(users, session.byUser, Date.now(), doc.settings.window)
    }
    digest ??= usersFileDigest(text)
    await save(digest)
    const changed = needsWrite(session.file, text)
    if (changed) await writeUsersFile(path, text)
    if (tracking?.stamp) stampUsersFile(path, digest, changed ? undefined : session.file, tracking.stamp)
    if (configured && path !== configured) {
      session.release()
      session = undefined
      await retireOldUsersFile(configured)
    }
    let users: string[] | undefined
    const report = {
      path,
      // parsed when asked for (ssh:sync): an update that changed one user does not parse the file
      get users() {
        return (users ??= [...entriesByUser(parseUsersFile(text)).keys()])
      },
      changed,
      imported: [...imported],
    }
    return {result, report}
  } finally {
    session?.release()
  }
}

/**
 * The users file during a login (Store.login): under the file's lock, only the user's own line
 * is read, its replay state imported before the decision, and after it the line replaced when
 * the login changed it (a code accepted by login:check becomes pam_oath's LASTOTP): a byte copy
 * of the file with one line changed, in pam_oath's protocol (lock, write, fsync, rename).
 */
export class LoginSync {
  private constructor(
    private readonly session: Session,
    private readonly user: string,
    private readonly mine: FoundLine | undefined,
  ) {}

  /**
   * Undefined when the login has nothing to do with the file (none configured, or the user has
   * no secret); 'full' when the file needs more than this user's line (it is missing, or lacks
   * or repeats the user): the caller then takes the full update path.
   */
  static async open(doc: Doc, user: string): Promise<LoginSync | 'full' | undefined> {
    const path = doc.settings.oathFile
    if (!path || !doc.users.get(user)?.secret) return undefined
    const session = await Session.open(path)
    const mine = session.file ? session.linesOf(user) : []
    const listed = doc.settings.enabled && doc.settings.ssh
    if (!session.file || (listed && mine.length !== 1) || (!listed && mine.length > 1)) {
      session.release()
      return 'full'
    }
    return new LoginSync(session, user, mine[0])
  }

  /** Copies the replay state pam_oath recorded on the user's line into their record. */
  importReplay(doc: Doc): void {
    const record = doc.users.get(this.user)
    if (record && this.mine) importUserReplay(record, [this.mine.entry], Date.now(), doc.settings.window)
  }

  /** Replaces the user's line when it must change (only while the file lists users). */
  async finish(doc: Doc): Promise<SyncReport> {
    const path = this.session.path
    const report = {path, users: [this.user], changed: false, imported: []}
    const u = doc.settings.enabled && doc.settings.ssh ? oathUser(this.user, doc.users.get(this.user)) : undefined
    if (!this.mine || !u || typeof u === 'string') return report // who is listed changes only through an update
    const line = oathLine(u, [this.mine.entry], Date.now(), doc.settings.window)
    const e = this.mine.entry
    const now = [e.type, e.user, e.passwd, e.secret, e.counter, e.lastOtp, e.time].filter((f) => f !== undefined).join('\t')
    if (line === now) return report
    const text = this.session.file!.text
    await writeUsersFile(path, text.slice(0, this.mine.start) + line + text.slice(this.mine.end))
    return {...report, changed: true}
  }

  release(): void {
    this.session.release()
  }
}
