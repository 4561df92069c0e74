import {parseUsersFile, entriesByUser, importReplay, importUserReplay, oathUsers, renderUsersFile} from '../../core/oath.js'
import type {Doc} from '../../core/model.js'
import type {ChangeSet, Projection, ProjectionRun, UpdateView} from '../change.js'
import {
  fileSettings,
  needsWrite,
  patchUsersFile,
  refuseForeignUsers,
  refuseTakeover,
  retireOldUsersFile,
  Session,
  type SideNote,
  sideNote,
  stampUsersFile,
  type SyncReport,
  usersFileDigest,
  writeUsersFile,
} from './sync.js'

// The pam_oath users file as a projection of each update's change set (../change.ts). Whichever
// backend runs the update, the file follows from what changed:
// - opened before the update's function, under the file's lock, so that replay state pam_oath
//   recorded is in the records before anything is decided (a code used over SSH is refused by
//   login:check, and kept when lines are dropped);
// - planned before the store is saved, so that a user who cannot be expressed in the file stops
//   the update with nothing written;
// - written after the store saved, keeping pam_oath's replay fields (and writing the store's,
//   e.g. a code login:check accepted, so that sshd refuses it).
// While the file is in step with the store (its digest is the mark the store recorded) and no
// setting the file depends on changed, only the lines of the change set's users are made anew:
// the replay state of a user is imported as their record is first read, and every other line is
// carried over as bytes. Otherwise the whole file is rendered from every record.

/** What `plan` decided to write. */
interface Planned {
  path: string
  data: Buffer[]
  digest: string
  /** The bytes are those of the file on disk already. */
  same: boolean
}

class UsersFileRun implements ProjectionRun<SyncReport> {
  private session?: Session
  /** The file is what the store last wrote: a change set is enough to patch it. */
  private inStep = false
  private readonly imported = new Set<string>()
  private planned?: Planned
  private readonly stamp?: SideNote

  private constructor(
    /** The users file the store named before the update (null: none). */
    private readonly configured: string | null,
    private readonly view: UpdateView,
  ) {
    if (view.note) this.stamp = sideNote(view.note)
  }

  static async open(doc: Doc, view: UpdateView): Promise<UsersFileRun> {
    const run = new UsersFileRun(doc.settings.oathFile, view)
    if (!run.configured) return run // no users file: no extra file I/O
    try {
      await run.openConfigured(doc)
    } catch (error) {
      run.release()
      throw error
    }
    return run
  }

  private async openConfigured(doc: Doc): Promise<void> {
    const session = await Session.open(this.configured!)
    this.session = session
    const file = session.file
    const {mark} = this.view
    // untouched since the store wrote it (its stamp), or still what the store wrote (its digest)
    this.inStep = mark !== null && file !== undefined && (this.stamp?.read() === `${mark} ${file.stamp}` || mark === usersFileDigest(file.bytes))
    const now = Date.now()
    if (this.inStep && this.view.onLoad)
      this.view.onLoad((user, record) => {
        if (
          importUserReplay(
            record,
            session.linesOf(user).map((f) => f.entry),
            now,
            doc.settings.window,
          )
        )
          this.imported.add(user)
      })
    else this.importAll(doc)
  }

  /** Copies the replay state pam_oath recorded into every record (the records the update reads, when they are read lazily). */
  private importAll(doc: Doc): void {
    for (const user of importReplay(doc, this.session!.byUser, Date.now())) this.imported.add(user)
  }

  async plan(doc: Doc, change: ChangeSet): Promise<string | null | undefined> {
    const path = change.after.oathFile
    if (path !== (this.session?.path ?? null)) {
      this.session?.release()
      this.session = undefined
      this.inStep = false
      if (path) {
        refuseTakeover(path, undefined, this.view.protect) // by name, before its lock is even created
        this.session = await Session.open(path)
        this.importAll(doc)
      }
    }
    const session = this.session
    if (!session || !path) return undefined
    if (this.inStep && !change.whole && this.view.onLoad && fileSettings(change.before) === fileSettings(change.after)) {
      const patched = patchUsersFile(doc, session, change.users, Date.now(), this.view.mark!)
      this.planned = {path, ...patched}
    } else {
      // Lines are dropped or made anew from every record: first the replay state of users whose
      // records were not read yet (those read got it as they were read).
      if (this.inStep) this.importAll(doc)
      const users = oathUsers(doc) // fails closed, before anything is saved
      if (path !== this.configured) {
        refuseTakeover(path, session.file, this.view.protect)
        refuseForeignUsers(session.file, users)
      }
      const data = Buffer.from(renderUsersFile(users, session.byUser, Date.now(), doc.settings.window))
      this.planned = {path, data: [data], digest: usersFileDigest(data), same: session.file?.bytes.equals(data) ?? false}
    }
    return this.planned.digest
  }

  async write(): Promise<SyncReport | undefined> {
    const planned = this.planned
    const session = this.session
    if (!planned || !session) return undefined
    const {path, data, digest} = planned
    const changed = needsWrite(session.file, planned.same)
    if (changed) await writeUsersFile(path, data)
    if (this.stamp) stampUsersFile(path, digest, changed ? undefined : session.file, this.stamp)
    if (this.configured && path !== this.configured) {
      session.release()
      this.session = undefined
      await retireOldUsersFile(this.configured)
    }
    let users: string[] | undefined
    return {
      path,
      // parsed when asked for (ssh:sync): an update that changed one user does not parse the file
      get users() {
        return (users ??= [...entriesByUser(parseUsersFile(Buffer.concat(data).toString('utf8'))).keys()])
      },
      changed,
      imported: [...this.imported],
    }
  }

  release(): void {
    this.session?.release()
    this.session = undefined
  }
}

/** The pam_oath users file, kept by the stores that keep one (the file store). */
export const usersFileProjection: Projection<SyncReport> = {open: (doc, view) => UsersFileRun.open(doc, view)}
