import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import {basename, dirname, join} from 'node:path'
import {EXIT, storeError, TfaError} from '../../core/errors.js'
import type {Doc, Settings} from '../../core/model.js'
import {
  entriesByUser,
  findPamOath,
  foreignLine,
  importUserReplay,
  OATH_HEADER,
  type OathEntry,
  oathLine,
  parseOathLine,
  oathUnsupported,
  oathUser,
  type OathUser,
} from '../../core/oath.js'
import {fsyncDir, type UnsafeDir, unsafeDir} from '../../os/files.js'
import {isRoot, readUsersFile, statStamp, TEMP_MARK, type UsersFile, warn} from './file.js'
import {removeStalePamNew, UsersFileLock} from './lock.js'
import {waitForStaleReaders} from './readers.js'

// Phase 3 (liboath: write `.new`, fsync, rename): the users file rewritten, under its lock. What
// to write comes from a change set (projection.ts) or, for a login, from one user's line.

/**
 * Replaces the users file with `data` (pieces are written in turn, never joined into one copy):
 * temp file in the same directory (0600, root-owned when run as root), fsync, rename, fsync the
 * directory. Call holding the lock.
 */
export function replaceUsersFile(path: string, data: string | Buffer | Buffer[]): void {
  const dir = dirname(path)
  const name = basename(path)
  // Temp files a killed tfactl left: ours alone, and only touched under the lock.
  for (const entry of fs.readdirSync(dir)) if (entry.startsWith(`${name}${TEMP_MARK}`)) fs.rmSync(join(dir, entry), {force: true})
  const temp = join(dir, `${name}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`)
  const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
  try {
    try {
      if (Array.isArray(data)) for (const piece of data) for (let done = 0; done < piece.length; ) done += fs.writeSync(fd, piece, done)
      else fs.writeFileSync(fd, data)
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

/** Whether the file on disk must be rewritten (`same`: its bytes are already the ones wanted): a missing file, other bytes, another mode or owner. */
export const needsWrite = (file: UsersFile | undefined, same: boolean): boolean => !file || !same || file.mode !== 0o600 || (isRoot() && file.uid !== 0)

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
export function refuseForeignUsers(file: UsersFile | undefined, users: OathUser[]): void {
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
export async function retireOldUsersFile(old: string): Promise<void> {
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
export class Session {
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
    return (this.finder ??= new LineFinder(this.file?.bytes ?? Buffer.alloc(0))).get(user)
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
export function usersFileDigest(text: string | Buffer): string {
  return digestOf(lineSum(text))
}

/** Bytes of users files gone over to work out digests: counted for tests (test/unit/scale-work.test.ts), never timed. */
export const digestWork = {bytes: 0}

/** The numbers behind a digest: lines, and the two sums of their hashes (mod 2^32). */
export interface LineSum {
  lines: number
  a: number
  b: number
}

const DIGEST = 'lines1'
export const digestOf = (s: LineSum): string => `${DIGEST}:${s.lines}:${s.a.toString(16)}:${s.b.toString(16)}`

export function parseDigest(digest: string): LineSum | undefined {
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
export function lineSum(text: string | Buffer, sum: LineSum = {lines: 0, a: 0, b: 0}, sign = 1): LineSum {
  const src = typeof text === 'string' ? Buffer.from(text, 'utf8') : text
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

/** A user's line and where it is in the file's bytes ([start, end), without its newline). */
export interface FoundLine {
  entry: OathEntry
  start: number
  end: number
}

const NL = 0x0a
/** The line of `bytes` that holds offset `at`: [start, end) without its newline. */
function lineAt(bytes: Buffer, at: number): {start: number; end: number} {
  const start = at === 0 ? 0 : bytes.lastIndexOf(NL, at - 1) + 1
  const nl = bytes.indexOf(NL, at)
  return {start, end: nl < 0 ? bytes.length : nl}
}

/** One user's lines, found by searching the bytes for the name (no parse of the other lines). */
function findUserLines(bytes: Buffer, user: string): FoundLine[] {
  const found: FoundLine[] = []
  const name = Buffer.from(user, 'utf8')
  for (let from = 0; ; ) {
    const at = bytes.indexOf(name, from)
    if (at < 0) return found
    const {start, end} = lineAt(bytes, at)
    const entry = parseOathLine(bytes.toString('utf8', start, end), 0)
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
  private readonly found = new Map<string, FoundLine[]>()
  constructor(private readonly bytes: Buffer) {}

  get(user: string): FoundLine[] {
    if (this.index) return this.index.get(user) ?? []
    let lines = this.found.get(user)
    if (lines) return lines
    if (this.found.size >= 16) {
      this.index = this.indexAll()
      return this.index.get(user) ?? []
    }
    lines = findUserLines(this.bytes, user)
    this.found.set(user, lines)
    return lines
  }

  private indexAll(): Map<string, FoundLine[]> {
    const index = new Map<string, FoundLine[]>()
    for (let start = 0; start < this.bytes.length; ) {
      const nl = this.bytes.indexOf(NL, start)
      const end = nl < 0 ? this.bytes.length : nl
      const entry = parseOathLine(this.bytes.toString('utf8', start, end), 0)
      if (entry) index.set(entry.user, [...(index.get(entry.user) ?? []), {entry, start, end}])
      start = end + 1
    }
    return index
  }
}

/** Where a new line for `user` goes in a file sorted by user (binary search over its lines). */
function insertionPoint(bytes: Buffer, user: string): number {
  let lo = 0
  let hi = bytes.length
  while (lo < hi) {
    const {start, end} = lineAt(bytes, (lo + hi) >>> 1)
    const entry = parseOathLine(bytes.toString('utf8', start, end), 0)
    if (!entry || entry.user < user)
      lo = end + 1 // the header and comments come first
    else hi = start
  }
  return Math.min(lo, bytes.length)
}

/** The settings that decide who is in the file and how their lines are made. */
export const fileSettings = (s: Settings): string => JSON.stringify([s.enabled, s.ssh, s.oathFile, s.window])

/**
 * The users file with the lines of `changed` users made anew from the store; every other line
 * (header, comments, other users with pam_oath's replay fields) is carried over as it is: the
 * result is slices of the file's bytes with those lines replaced (no copy of the rest). New users'
 * lines go where the sorted order puts them. The new digest comes from `digest` (the file's) with
 * the replaced lines taken out and the new ones put in; `same`: no byte changed.
 */
export function patchUsersFile(
  doc: Doc,
  session: Session,
  changed: Iterable<string>,
  now: number,
  digest: string,
): {data: Buffer[]; digest: string; same: boolean} {
  const on = doc.settings.enabled && doc.settings.ssh
  const bytes = session.file!.bytes
  const edits: Array<{start: number; end: number; line: Buffer; user: string}> = []
  const problems: string[] = []
  const unended = bytes.length > 0 && bytes[bytes.length - 1] !== NL
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
    for (const [i, f] of found.entries()) edits.push({start: f.start, end: Math.min(f.end + 1, bytes.length), line: Buffer.from(i === 0 ? line : ''), user})
    if (found.length === 0 && line) {
      const at = insertionPoint(bytes, user)
      edits.push({start: at, end: at, line: Buffer.from(at === bytes.length && unended ? `\n${line}` : line), user})
    }
  }
  if (problems.length > 0) throw oathUnsupported(problems)
  edits.sort((a, b) => a.start - b.start || (a.user < b.user ? -1 : 1))
  const data: Buffer[] = []
  let at = 0
  let same = true
  for (const e of edits) {
    data.push(bytes.subarray(at, e.start), e.line)
    if (same && !e.line.equals(bytes.subarray(e.start, e.end))) same = false
    at = e.end
  }
  data.push(bytes.subarray(at))
  let sum = parseDigest(digest)
  // a file without its last newline gets one before an appended line: counted from the bytes
  if (!sum || unended) return {data, digest: usersFileDigest(Buffer.concat(data)), same}
  for (const e of edits) sum = lineSum(e.line, lineSum(bytes.subarray(e.start, e.end), sum, -1))
  return {data, digest: digestOf(sum), same}
}

/** A small note kept in a side file: read and written without fsync, as it only saves work. */
export interface SideNote {
  read(): string | undefined
  write(value: string): void
}

/** The note at `path` (the users file's stamp beside the store); a missing or unreadable one reads as undefined. Never follows a link. */
export function sideNote(path: string): SideNote {
  let known: string | undefined
  return {
    read() {
      if (known !== undefined) return known
      try {
        const fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
        try {
          known = fs.readFileSync(fd, 'utf8')
        } finally {
          fs.closeSync(fd)
        }
      } catch {
        known = undefined
      }
      return known
    },
    write(value) {
      const temp = `${path}.tmp-${process.pid}`
      fs.rmSync(temp, {force: true})
      const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
      try {
        fs.writeFileSync(fd, value)
      } finally {
        fs.closeSync(fd)
      }
      fs.renameSync(temp, path)
      known = value
    },
  }
}

/**
 * Records the stamp of the users file the store now names (`file`, or the one just written):
 * the next update trusts it without working out its digest while the stamp still matches.
 * Best effort: without a stamp the next update works the digest out.
 */
export function stampUsersFile(path: string, digest: string, file: UsersFile | undefined, stamp: SideNote): void {
  try {
    const value = `${digest} ${file?.stamp ?? statStamp(fs.lstatSync(path, {bigint: true}))}`
    if (stamp.read() !== value) stamp.write(value)
  } catch {
    // no stamp: the digest is worked out next time
  }
}

/** Writes the users file; a failure says the store was updated already. */
export async function writeUsersFile(path: string, data: string | Buffer | Buffer[]): Promise<void> {
  try {
    replaceUsersFile(path, data)
  } catch (error) {
    const reason = error instanceof TfaError ? error.message : `${(error as NodeJS.ErrnoException).code ?? ''} ${(error as Error).message}`.trim()
    throw storeError(`the store was updated, but the pam_oath users file ${path} could not be written (${reason}): fix that and run tfactl ssh:sync`)
  }
  const left = await waitForStaleReaders(path)
  if (left.length > 0)
    warn(`pam_oath process(es) ${left.join(', ')} still hold an older copy of ${path} and may write it back: check with tfactl ssh:sync --check`)
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
    const bytes = this.session.file!.bytes
    await writeUsersFile(path, [bytes.subarray(0, this.mine.start), Buffer.from(line), bytes.subarray(this.mine.end)])
    return {...report, changed: true}
  }

  release(): void {
    this.session.release()
  }
}
