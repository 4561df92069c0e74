import {accessSync, constants, lstatSync} from 'node:fs'
import {homedir} from 'node:os'
import {dirname, join} from 'node:path'
import {forbidden} from '../core/errors.js'

export const SYSTEM_STORE = '/var/lib/tfactl/store.json'

/** Whether the system store exists; a directory that hides it (EACCES) counts as yes. */
function systemStoreExists(path: string): boolean {
  try {
    lstatSync(path)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT'
  }
}

/**
 * Where the store lives: `--store`/`TFACTL_STORE` first, then root's system path, then the
 * user's XDG state directory. A non-root caller never silently gets a private empty store while
 * the system store exists: they get the system store, or exit 4 when they cannot read it.
 */
export function defaultStorePath(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1, system = SYSTEM_STORE): string {
  if (env.TFACTL_STORE) return env.TFACTL_STORE
  if (uid === 0) return system
  if (systemStoreExists(system)) {
    try {
      accessSync(system, constants.R_OK)
      return system
    } catch {
      throw forbidden(`the system store ${system} exists but you cannot read it: run with sudo, or name your own store with --store`)
    }
  }
  const state = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state')
  return join(state, 'tfactl', 'store.json')
}

/**
 * The files that live beside a store, all named after it, so that two stores in one directory
 * share nothing (rotating one's key never touches the other's). `legacyKey`/`legacyAudit` are the
 * names tfactl used before, shared by every store of the directory: the key is still read (never
 * written) for a store sealed with it, until its next write seals it under its own key.
 */
export const sidecars = (store: string) => ({
  lock: `${store}.lock`,
  backup: `${store}.bak`,
  journal: `${store}.journal`,
  key: `${store}.key`,
  audit: `${store}.audit.log`,
  /** Which pam_oath users file the store last wrote, as it stood then (oathfile/projection.ts: UpdateView.note). */
  oathStamp: `${store}.oath-stamp`,
  legacyKey: join(dirname(store), 'tfactl.key'),
  legacyAudit: join(dirname(store), 'audit.log'),
})
