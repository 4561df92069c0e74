import {homedir} from 'node:os'
import {dirname, join} from 'node:path'

/**
 * Where the store lives: `--store`/`TFACTL_STORE` first, then root's system path, then the
 * user's XDG state directory.
 */
export function defaultStorePath(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1): string {
  if (env.TFACTL_STORE) return env.TFACTL_STORE
  if (uid === 0) return '/var/lib/tfactl/store.json'
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
  legacyKey: join(dirname(store), 'tfactl.key'),
  legacyAudit: join(dirname(store), 'audit.log'),
})
