import {existsSync, renameSync, rmSync} from 'node:fs'
import {dirname} from 'node:path'
import {EXIT, forbidden, storeError, TfaError, usageError} from '../../core/errors.js'
import {type Doc, emptyDoc, type Settings, STORE_VERSION} from '../../core/model.js'
import {checkOathPath} from '../../core/oath.js'
import {sameSettings} from '../../core/settings.js'
import {atomicWrite, checkStoreDir, ensureDir, fsyncDir, readPrivateFile, removeStaleTemps} from '../../os/files.js'
import {KeyFiles, type KeyRing} from '../keys.js'
import {readUsersFile} from '../oathfile/file.js'
import {changeSet, projectUpdate} from '../change.js'
import {usersFileProjection} from '../oathfile/projection.js'
import {refuseTakeover, type SyncReport} from '../oathfile/sync.js'
import {describeOpeners, openers, procName} from '../../os/procs.js'
import {decodeStore, Reader} from '../sealed.js'
import {encodeStore, newEpoch} from './codec.js'
import {headerSettings, NO_KEYS, parseDocument as parse, withSettings} from './header.js'
import {readJournal, resetJournal} from './journal.js'
import {withLock} from './lock.js'
import type {ForceReport, RestoreReport} from '../backend.js'
import {checkNotLost} from './lost.js'
import {overlay, type Store, withBackupNote} from './store.js'

// The emergency paths of the file store (issue "the emergency bypass works when things are
// broken"), kept apart from the ordinary read/update code:
// - updateSettingsSealed: settings changed without opening a single secret (no key needed);
// - forceDisable: 2FA off whatever state the files are in, moving aside what cannot be used;
// - restoreStore: a valid backup put back, the current store moved aside.
// Nothing here deletes a store, a backup, a journal or a key: what is replaced is renamed to
// `<file>.broken-<UTC time>`.

type Json = Record<string, unknown>

/** 20261130T112233Z */
const stamp = (): string =>
  new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')

/** Renames `path` to `<path>.broken-<UTC time>` (a free name); never deletes. */
export function moveAside(path: string): string {
  const base = `${path}.broken-${stamp()}`
  let target = base
  for (let n = 2; existsSync(target); n++) target = `${base}-${n}`
  renameSync(path, target)
  fsyncDir(dirname(path))
  return target
}

// ---------------------------------------------------------------------------------------------
// Settings without secrets

/**
 * Changes the settings only, under the store lock, without the key: the sealed user records are
 * carried over untouched (byte for byte), the previous store is kept as `.bak`, and the journal
 * stays valid (the epoch is unchanged). The pam_oath users file follows as on every update (a
 * projection of the change, rendered whole: the records are not read).
 * Only for changes that leave the users file empty (2FA or SSH 2FA off): the records' secrets
 * are not opened, so they cannot be written there.
 */
export async function updateSettingsSealed(
  store: Store,
  change: (s: Settings) => Settings,
): Promise<{before: Settings; after: Settings; usersFile?: SyncReport; keyProblem?: string}> {
  checkStoreDir(dirname(store.path))
  ensureDir(dirname(store.path))
  return withLock(store.files.lock, async () => {
    removeStaleTemps(store.path)
    const raw = readPrivateFile(store.path)
    if (raw === undefined) checkNotLost(store.path)
    let edit
    try {
      edit = withSettings(raw?.toString('utf8') ?? encodeStore(emptyDoc(), NO_KEYS).text, store.path, change)
    } catch (error) {
      throw withBackupNote(error, store.files.backup)
    }
    const {text, before, after, keyId} = edit
    let keyProblem: string | undefined // not needed here, but the admin should know before turning 2FA on again
    try {
      if (keyId !== null && !new KeyFiles(store.files.key, store.files.legacyKey).byId(keyId))
        keyProblem = `${store.files.key} is missing or is not the key (id ${keyId}) that sealed the secrets`
    } catch (error) {
      keyProblem = (error as Error).message
    }
    if (after.enabled && after.ssh && after.oathFile) throw new Error('updateSettingsSealed: the users file would lose its users')
    const doc: Doc = {version: STORE_VERSION, settings: before, users: new Map()} // the users file is rendered empty
    const {report} = await projectUpdate(
      doc,
      usersFileProjection,
      {mark: null, protect: ownFiles(store)},
      {
        run: async () => {
          doc.settings = after
        },
        change: () => changeSet([], before, doc, true),
        save: async () => {
          if (!sameSettings(before, after)) atomicWrite(store.path, text, store.files.backup)
        },
      },
    )
    return {before, after, usersFile: report, keyProblem}
  })
}

// ---------------------------------------------------------------------------------------------
// Reading what can be read

/** What a store file holds, read as far as it can be. */
type Assessed = {valid: true; doc: Doc; epoch: string | null; unreadable: string[]} | {valid: false; problem: string}

/**
 * Decodes a store; when the whole does not decode (a missing or wrong key, a damaged record),
 * each user on their own, so that the records that can be read are known, and which cannot.
 */
function assess(text: string, where: string, keys: KeyRing): Assessed {
  let first: string
  try {
    const d = decodeStore(text, where, keys)
    return {valid: true, doc: d.doc, epoch: d.epoch, unreadable: []}
  } catch (error) {
    first = (error as Error).message
  }
  let fields: Json
  let users: Json
  try {
    const r = new Reader(where)
    const o = parse(r, text)
    users = r.object(o.users ?? {}, 'users')
    const {users: _ignored, ...rest} = o
    fields = rest
    decodeStore(JSON.stringify({...fields, users: {}}), where, NO_KEYS)
  } catch {
    return {valid: false, problem: first}
  }
  const base = decodeStore(JSON.stringify({...fields, users: {}}), where, NO_KEYS)
  const unreadable: string[] = []
  for (const name of Object.keys(users)) {
    try {
      const one = decodeStore(JSON.stringify({...fields, users: {[name]: users[name]}}), where, keys)
      base.doc.users.set(name, one.doc.users.get(name)!)
    } catch {
      unreadable.push(name)
    }
  }
  return {valid: true, doc: base.doc, epoch: base.epoch, unreadable}
}

/** A file read for recovery: its text, or why it cannot be used (undefined: it does not exist). */
function readForRecovery(path: string): {text?: string; problem?: string} | undefined {
  try {
    const raw = readPrivateFile(path)
    return raw === undefined ? undefined : {text: raw.toString('utf8')}
  } catch (error) {
    return {problem: (error as Error).message}
  }
}

/** The journal's entries folded into `doc` when the journal belongs to `epoch`; a warning when it cannot be read. */
function foldJournal(path: string, doc: Doc, epoch: string | null, warnings: string[]): void {
  try {
    overlay(doc, readJournal(path, epoch).entries)
  } catch (error) {
    warnings.push(`the journal could not be read (${(error as Error).message}); it is kept as it was`)
  }
}

/** The epoch a journal file names (undefined when none can be read). */
function journalEpoch(path: string): string | undefined {
  try {
    const first = readPrivateFile(path)?.toString('utf8').split('\n')[0]
    const epoch = first ? JSON.parse(first)?.epoch : undefined
    return typeof epoch === 'string' ? epoch : undefined
  } catch {
    return undefined
  }
}

/**
 * Runs `fn` holding the store lock; when another process holds it, names that process
 * (exit 3): a lock held by a live process is never broken.
 */
async function holdingStoreLock<T>(store: Store, waitMs: number, fn: () => Promise<T>): Promise<T> {
  checkStoreDir(dirname(store.path)) // a directory others can write is never trusted, not even to repair it
  ensureDir(dirname(store.path))
  let entered = false
  try {
    return await withLock(
      store.files.lock,
      async () => {
        entered = true
        return fn()
      },
      waitMs,
    )
  } catch (error) {
    if (entered || !(error instanceof TfaError) || error.exit !== EXIT.store) throw error
    const holders = openers([procName(store.files.lock)])
    if (holders.length === 0) throw error
    throw storeError(
      `the store lock ${store.files.lock} is held by ${describeOpeners(holders)}; a lock held by a live process is never broken, so nothing was changed: ` +
        `let it finish, or end it (kill ${holders.map((h) => h.pid).join(' ')}; a stopped one needs kill -CONT too), then run this again`,
    )
  }
}

// ---------------------------------------------------------------------------------------------
// twofactor:disable --force

/** The users file a damaged store's text still names (its settings line is often intact). */
function oathFileIn(text: string | undefined): string | undefined {
  const m = text === undefined ? null : /"oathFile":("(?:[^"\\]|\\.)*")/.exec(text)
  if (!m) return undefined
  try {
    return checkOathPath(JSON.parse(m[1]))
  } catch {
    return undefined
  }
}

/** The store's own files: never a users file (as Store.apply protects them). */
const ownFiles = (store: Store): string[] => {
  const f = store.files
  return [store.path, f.lock, f.backup, f.journal, f.key, `${f.key}.next`, f.audit, `${f.audit}.lost`, f.legacyKey, `${f.legacyKey}.next`, f.legacyAudit]
}

/**
 * A users file named on the command line is taken over only as any new users file is: empty or
 * a users file, in a directory only root can write, never one of the store's own files.
 */
function checkTakeOver(path: string, store: Store): string {
  refuseTakeover(path, readUsersFile(path), ownFiles(store))
  return path
}

/** How long --force waits for the store lock before naming its holder. */
export const FORCE_LOCK_WAIT_MS = 3000

const STIG_FORCE = 'STIG mode forbids turning 2FA off; to leave STIG mode first and then turn 2FA off, run: tfactl twofactor:disable --force --no-stig'

/**
 * 2FA off whatever state the files are in, losing nothing: a store that cannot be used as it is
 * (unreadable, corrupt, secrets that do not decrypt) is moved aside and replaced by a valid store
 * with 2FA off (settings and readable records from the store, else from `.bak`, else defaults);
 * a pam_oath `.lock` that no process has open is removed; the users file is rewritten empty.
 */
export async function forceDisable(store: Store, opts: {leaveStig: boolean; oathFile?: string; waitMs?: number}): Promise<ForceReport> {
  const {files} = store
  return holdingStoreLock(store, opts.waitMs ?? FORCE_LOCK_WAIT_MS, async () => {
    removeStaleTemps(store.path)
    const keys = new KeyFiles(files.key, files.legacyKey)
    const warnings: string[] = []
    const movedAside: string[] = []
    const removedLocks: string[] = []

    // 1. What the store holds, and where the new store's content comes from (nothing changed yet).
    const current = readForRecovery(store.path)
    const fromStore = current?.text === undefined ? undefined : assess(current.text, store.path, keys)
    let source: {doc: Doc; epoch: string | null; unreadable: string[]; from: ForceReport['settingsFrom']}
    if (fromStore?.valid) source = {...fromStore, from: 'store'}
    else {
      if (current) warnings.push(`${store.path} cannot be used: ${current.problem ?? (fromStore as {problem: string}).problem}`)
      const backup = readForRecovery(files.backup)
      const fromBackup = backup?.text === undefined ? undefined : assess(backup.text, files.backup, keys)
      if (fromBackup?.valid) source = {...fromBackup, from: 'backup'}
      else {
        if (backup) warnings.push(`${files.backup} cannot be used either: ${backup.problem ?? (fromBackup as {problem: string}).problem}`)
        source = {doc: emptyDoc(), epoch: null, unreadable: [], from: 'defaults'}
      }
    }
    const whole = source.from === 'store' && source.unreadable.length === 0
    const doc = source.doc
    if (source.from !== 'defaults') foldJournal(files.journal, doc, source.epoch, warnings) // only a journal of that file's epoch applies
    if (source.unreadable.length > 0)
      warnings.push(
        `the records of ${source.unreadable.join(', ')} cannot be read (key missing or wrong, or damaged): they are left out of the new store and stay in ${source.from === 'store' ? 'the store moved aside' : files.backup}`,
      )

    // 2. STIG mode is left only when asked (exit 4 before anything is touched).
    const before = {...doc.settings}
    if (doc.settings.stig) {
      if (!opts.leaveStig) throw forbidden(STIG_FORCE)
      doc.settings.stig = false
    }
    doc.settings.enabled = false

    // The users file sshd reads: named, else the store's, else the one a damaged store still names.
    if (opts.oathFile) doc.settings.oathFile = checkTakeOver(opts.oathFile, store)
    else if (source.from !== 'store') doc.settings.oathFile = oathFileIn(current?.text) ?? doc.settings.oathFile
    if (!doc.settings.oathFile && source.from !== 'store')
      warnings.push('no pam_oath users file is known: if sshd uses pam_oath, run this again with --oath-file PATH (the usersfile= of its PAM line)')

    // 3. A pam_oath lock no process has open was left by a crash: while it exists pam_oath
    // refuses every code, and tfactl cannot rewrite the users file.
    const oath = doc.settings.oathFile
    if (oath && existsSync(`${oath}.lock`)) {
      const holders = openers([procName(oath), procName(`${oath}.lock`)])
      if (holders.length === 0) {
        rmSync(`${oath}.lock`, {force: true})
        removedLocks.push(`${oath}.lock`)
      } else
        throw storeError(
          `${oath}.lock is open in ${describeOpeners(holders)}: a pam_oath login (or a tfactl) is using the users file, and its lock is never broken; nothing was changed: let it finish, or end it, then run this again`,
        )
    }

    // 4. Write: what cannot be used is moved aside first, inside the users file's update, so a
    // users file that cannot be locked leaves every file as it was.
    let savedCopy: string | undefined
    const save = async (): Promise<void> => {
      if (!whole) {
        // The users file is about to lose its lines; for records that cannot be read, they may
        // be the last readable copy of a secret.
        const lines = oath ? readUsersFile(oath) : undefined // never through a link
        if (oath && lines && lines.entries.length > 0) {
          savedCopy = `${oath}.saved-${stamp()}`
          atomicWrite(savedCopy, lines.bytes)
        }
        if (current) movedAside.push(moveAside(store.path))
        if (existsSync(files.journal)) movedAside.push(moveAside(files.journal)) // its entries are in `doc` when they belong to it
        const sealed = [...doc.users.values()].some((u) => u.secret || u.pending)
        if (!sealed && existsSync(files.key)) {
          try {
            keys.byId('')
          } catch {
            movedAside.push(moveAside(files.key)) // a damaged key file would stop the next enrolment
          }
        }
      }
      if (!whole || !sameSettings(before, doc.settings)) {
        const epoch = newEpoch()
        atomicWrite(store.path, encodeStore(doc, keys, epoch).text, files.backup)
        resetJournal(files.journal, epoch)
      }
    }
    // every record may differ from what the users file lists: it is rendered whole from `doc`
    const {report} = await projectUpdate(
      doc,
      usersFileProjection,
      {mark: null, protect: ownFiles(store)},
      {run: async () => undefined, change: () => changeSet(doc.users.keys(), before, doc, true), save},
    )
    const usersFile = report ? {path: report.path, changed: report.changed, users: report.users, ...(savedCopy ? {savedCopy} : {})} : null
    const changed = !whole || !sameSettings(before, doc.settings) || removedLocks.length > 0 || Boolean(report?.changed)
    return {changed, movedAside, usersFile, removedLocks, warnings, settingsFrom: source.from, unreadable: source.unreadable}
  })
}

// ---------------------------------------------------------------------------------------------
// store:restore

/**
 * Puts a valid backup back as the store: the backup is decoded first (with the key; users whose
 * secrets cannot be opened are reported), then the current store (and a journal that belongs to
 * it) is moved aside and the backup copied in its place. The backup itself stays.
 */
export async function restoreStore(store: Store, from: string): Promise<RestoreReport> {
  const {files} = store
  if (from === store.path) throw usageError(`--from ${from} is the store itself: name a backup`)
  // --from is judged as the store is: its directories (their real path, links resolved) no
  // other user may change, so none can swap what is opened below; the file itself is opened
  // once, never through a link, and judged as opened (readPrivateFile).
  checkStoreDir(dirname(from), 'the directory of --from')
  const real = procName(from)
  return holdingStoreLock(store, FORCE_LOCK_WAIT_MS, async () => {
    removeStaleTemps(store.path)
    const read = readForRecovery(real)
    if (!read) throw storeError(`no backup at ${from}: nothing was restored (tfactl twofactor:disable --force turns 2FA off without one)`)
    const checked =
      read.text === undefined ? {valid: false as const, problem: read.problem!} : assess(read.text, from, new KeyFiles(files.key, files.legacyKey))
    if (!checked.valid)
      throw storeError(`${from} is not a valid store (${checked.problem}); nothing was restored (tfactl twofactor:disable --force turns 2FA off without it)`)
    const warnings: string[] = []
    const movedAside: string[] = []
    if (existsSync(store.path)) movedAside.push(moveAside(store.path))
    if (existsSync(files.journal) && journalEpoch(files.journal) !== checked.epoch) movedAside.push(moveAside(files.journal))
    atomicWrite(store.path, read.text!)
    if (checked.unreadable.length > 0)
      warnings.push(
        `the secrets of ${checked.unreadable.join(', ')} cannot be decrypted with ${files.key}: put the key that sealed them back, or run tfactl twofactor:disable --force`,
      )
    return {
      restored: true,
      from,
      movedAside,
      undecryptable: checked.unreadable,
      users: checked.doc.users.size + checked.unreadable.length,
      enabled: checked.doc.settings.enabled,
      warnings,
    }
  })
}

// ---------------------------------------------------------------------------------------------
// doctor: the one command out of a broken store

/**
 * The command that gets out of the state a store that failed to read is in: a lost or corrupt
 * store with a usable `.bak` → store:restore; secrets that cannot be opened while 2FA is on →
 * twofactor:disable (no key needed); anything else → twofactor:disable --force (with --no-stig
 * when the settings it would keep are STIG mode's).
 */
export function emergencyFix(store: Store): string | undefined {
  const text = readForRecovery(store.path)?.text
  if (text !== undefined && Number(/^\{"version":(\d+)/.exec(text)?.[1]) > STORE_VERSION) return undefined // a newer tfactl wrote it: upgrade
  const settingsOf = (path: string) => {
    const read = readForRecovery(path)
    return read?.text === undefined ? undefined : headerSettings(read.text, path)
  }
  const current = settingsOf(store.path)
  const backup = settingsOf(store.files.backup)
  const force = (s: Settings | undefined) => `tfactl twofactor:disable --force${s?.stig ? ' --no-stig' : ''}`
  if (!current) return backup ? 'tfactl store:restore' : force(undefined)
  return current.enabled && !current.stig ? 'tfactl twofactor:disable' : force(current)
}
