import type {Doc, Settings, UserRecord} from '../core/model.js'
import {sameSettings} from '../core/settings.js'

// What an update changed, and the mirrors written from it. Every backend's update yields a change
// set; whatever mirrors the state outside the store (the pam_oath users file) is a projection of
// it, written under the backend's lock by the projection's own module, never by the backend.

/** What one update changed. */
export interface ChangeSet {
  /** Users whose record the update created, changed or dropped. */
  readonly users: ReadonlySet<string>
  /** The settings before the update, and after it. */
  readonly before: Settings
  readonly after: Settings
  /**
   * Every record may differ from what the mirrors last saw (a forced disable, a settings change
   * made without the records): a projection renders from the whole state, not from `users`.
   */
  readonly whole: boolean
}

/** The change set of `doc` against the settings it had before (a snapshot, not the live object). */
export const changeSet = (users: Iterable<string>, before: Settings, doc: Doc, whole = false): ChangeSet => ({
  users: new Set(users),
  before,
  after: {...doc.settings},
  whole,
})

/**
 * The users the audit trail names for `change`: each user it touched ([] for a change of the
 * settings alone, recorded as one line without a user); undefined when it changed nothing.
 * `aside`: users whose records changed without the update's own doing (replay state a users
 * file out of step gave them), not the command's.
 */
export function auditedUsers(change: ChangeSet, aside: (user: string) => boolean = () => false): string[] | undefined {
  const users = [...change.users].filter((user) => !aside(user))
  return users.length > 0 || change.whole || !sameSettings(change.before, change.after) ? users : undefined
}

/** What a backend lets a projection see of one update, besides the document. */
export interface UpdateView {
  /**
   * The mark the projection gave with the store's last write (opaque to the backend, e.g. the
   * users file's digest); null: none. While the mirror still matches it, a change set is enough.
   */
  mark: string | null
  /**
   * Runs `hook` on each record as the update first reads it (a store that reads records lazily);
   * absent: every record is in the document already.
   */
  onLoad?(hook: (user: string, record: UserRecord) => void): void
  /** The store's own files: never a mirror's path. */
  protect: readonly string[]
  /** A side file where the projection may keep a note about its mirror (best effort, no fsync). */
  note?: string
}

/** One update's run of a projection, opened under the backend's lock before the update's function. */
export interface ProjectionRun<R> {
  /**
   * Works out what the mirror becomes for `change` (it may refuse: the update then saves
   * nothing). Returns the mark the store records with its write (undefined: keep its mark).
   */
  plan(doc: Doc, change: ChangeSet): Promise<string | null | undefined>
  /** Writes the mirror, once the store has saved the change; what it did (undefined: no mirror). */
  write(): Promise<R | undefined>
  /** Releases what `open` held; idempotent, called whatever happened. */
  release(): void
}

/** A mirror of the store's state, kept by a module of its own. */
export interface Projection<R> {
  /** Before the update's function runs: it may copy state the mirror holds into records. */
  open(doc: Doc, view: UpdateView): Promise<ProjectionRun<R>>
}

/**
 * For a store that keeps no mirror outside itself (a database shared by many hosts): the same
 * update sequence, and `refuse` says why a change that would need one (a users file) is refused,
 * before anything is saved.
 */
export const noMirror = (refuse: (change: ChangeSet) => void): Projection<undefined> => ({
  open: async () => ({
    plan: async (_doc, change) => {
      refuse(change)
      return undefined
    },
    write: async () => undefined,
    release() {},
  }),
})

/**
 * One update with a projection, in the order that keeps the mirror and the store consistent:
 * the projection opened (its lock taken) before `fn`, its plan made before anything is saved,
 * the store saved (with the projection's mark), then the mirror written. Nothing is saved when
 * `fn` or the plan throws. Call holding the backend's lock.
 */
export async function projectUpdate<T, R>(
  doc: Doc,
  projection: Projection<R>,
  view: UpdateView,
  steps: {
    run: () => Promise<T>
    /** The change set once `fn` ran (the backend knows which records changed). */
    change: () => ChangeSet
    /** Saves the store, recording `mark` when it is not undefined. */
    save: (mark: string | null | undefined) => Promise<void>
  },
): Promise<{result: T; change: ChangeSet; report: R | undefined}> {
  const open = await projection.open(doc, view)
  try {
    const result = await steps.run()
    const change = steps.change()
    const mark = await open.plan(doc, change)
    await steps.save(mark)
    return {result, change, report: await open.write()}
  } finally {
    open.release()
  }
}
