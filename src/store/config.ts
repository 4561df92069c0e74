import {readFileSync} from 'node:fs'
import {resolve} from 'node:path'
import {usageError} from '../core/errors.js'
import {isDatabaseUrl} from './backend.js'
import {defaultStorePath} from './paths.js'

/** Where a database store's key lives unless --key-file, TFACTL_KEY_FILE or the config says. */
export const DEFAULT_KEY_FILE = '/etc/tfactl/tfactl.key'
export const DEFAULT_CONFIG = '/etc/tfactl/config.json'

export interface StoreConfig {
  store?: string
  keyFile?: string
}

/**
 * The config file (TFACTL_CONFIG, else /etc/tfactl/config.json as root): `{"store": …,
 * "keyFile": …}`. A missing default file is no config; a named file that is missing, or any
 * bad content → exit 2 naming the file.
 */
export function readConfig(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1): StoreConfig {
  const named = env.TFACTL_CONFIG
  const path = named || (uid === 0 ? DEFAULT_CONFIG : undefined)
  if (!path) return {}
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    if (!named && (error as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw usageError(`cannot read the config file ${path} (TFACTL_CONFIG): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (error) {
    throw usageError(`config file ${path}: not valid JSON (${(error as Error).message})`)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw usageError(`config file ${path}: expected a JSON object like {"store": "postgresql://…", "keyFile": "/etc/tfactl/tfactl.key"}`)
  const config: StoreConfig = {}
  for (const [name, value] of Object.entries(raw)) {
    if (name !== 'store' && name !== 'keyFile') throw usageError(`config file ${path}: unknown setting ${JSON.stringify(name)} (known: store, keyFile)`)
    if (typeof value !== 'string' || value === '') throw usageError(`config file ${path}: ${name}: expected a non-empty string`)
    config[name] = value
  }
  return config
}

/**
 * The store and key file to use: flags beat the environment (TFACTL_STORE, TFACTL_KEY_FILE),
 * which beats the config file, which beats the defaults. `flags` holds what was given on the
 * command line or through the environment (oclif merges the two).
 */
export function resolveStore(
  flags: {store?: string; keyFile?: string},
  env: NodeJS.ProcessEnv = process.env,
  uid = process.getuid?.() ?? -1,
): {spec: string; keyFile?: string} {
  const store = flags.store || env.TFACTL_STORE
  const keyFile = flags.keyFile || env.TFACTL_KEY_FILE
  const config = store && keyFile ? {} : readConfig(env, uid)
  const given = store || config.store
  const spec = given ? (isDatabaseUrl(given) ? given : resolve(given)) : defaultStorePath(env, uid)
  const key = keyFile || config.keyFile
  return {spec, keyFile: key ? resolve(key) : isDatabaseUrl(spec) ? DEFAULT_KEY_FILE : undefined}
}
