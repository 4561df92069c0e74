import {closeSync, constants, fstatSync, readFileSync} from 'node:fs'
import {dirname, resolve} from 'node:path'
import {storeError, TfaError, usageError} from '../core/errors.js'
import {isDatabaseUrl} from './backend.js'
import {openNoFollow, unsafeDir} from '../os/files.js'
import {defaultStorePath} from './paths.js'

/** Where a database store's key lives unless --key-file, TFACTL_KEY_FILE or the config says. */
export const DEFAULT_KEY_FILE = '/etc/tfactl/tfactl.key'
export const DEFAULT_CONFIG = '/etc/tfactl/config.json'

export interface StoreConfig {
  store?: string
  keyFile?: string
}

/**
 * The config file's text, judged as the key file is: it chooses the store every login of the
 * host trusts, so it must be a regular file (never a link) of root's or the caller's that no one
 * else can write, in directories no one else can swap; what was opened is checked (fstat), not
 * the path. Undefined when it does not exist. Anything else → exit 3 naming it.
 */
function readTrustedConfig(path: string): string | undefined {
  const refuse = (why: string) =>
    storeError(`config file ${path} ${why}, so another user could choose the store: refused (run as root: chown root ${path}; chmod go-w ${path})`)
  let fd: number
  try {
    fd = openNoFollow(path, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    if (error instanceof TfaError) throw refuse('is a symbolic link')
    throw error
  }
  try {
    const st = fstatSync(fd)
    const me = process.getuid?.() ?? 0
    if (!st.isFile()) throw refuse('is not a regular file')
    if (st.uid !== 0 && st.uid !== me) throw refuse(`belongs to uid ${st.uid}`)
    if (st.mode & 0o022) throw refuse(`is writable by group or others (mode ${(st.mode & 0o777).toString(8)})`)
    const dir = unsafeDir(dirname(path))
    if (dir) throw refuse(`is in ${dir.path}, which ${dir.why}`)
    return readFileSync(fd, 'utf8')
  } finally {
    closeSync(fd)
  }
}

/**
 * The config file (TFACTL_CONFIG, else /etc/tfactl/config.json as root): `{"store": …,
 * "keyFile": …}`. A missing default file is no config; a named file that is missing, or any
 * bad content → exit 2 naming the file; one that others could write or swap → exit 3.
 */
export function readConfig(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1): StoreConfig {
  const named = env.TFACTL_CONFIG
  const path = named || (uid === 0 ? DEFAULT_CONFIG : undefined)
  if (!path) return {}
  let text: string | undefined
  try {
    text = readTrustedConfig(path)
  } catch (error) {
    if (error instanceof TfaError) throw error
    throw usageError(`cannot read the config file ${path} (TFACTL_CONFIG): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
  if (text === undefined) {
    if (!named) return {}
    throw usageError(`cannot read the config file ${path} (TFACTL_CONFIG): ENOENT`)
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

/** Names in the environment that choose the store or how it is reached (libpq's PG* included). */
const STORE_ENV = /^(TFACTL_STORE|TFACTL_CONFIG|TFACTL_KEY_FILE|PG[A-Z_]*)$/

/**
 * Under sudo (root acting for SUDO_USER: self-service), the environment is the invoking user's
 * when sudoers keeps it (env_keep, sudo -E): it may not choose root's store, config file, key
 * file or database connection. Those names are removed from `env` (libpq's PG* would otherwise
 * still reach the database client); returns the names that were removed, for a warning.
 */
export function dropSudoEnvironment(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1): string[] {
  if (uid !== 0 || !env.SUDO_USER || env.SUDO_USER === 'root') return []
  const dropped = Object.keys(env)
    .filter((name) => STORE_ENV.test(name))
    .sort()
  for (const name of dropped) delete env[name]
  return dropped
}

/**
 * The store and key file to use: flags beat the environment (TFACTL_STORE, TFACTL_KEY_FILE),
 * which beats the config file, which beats the defaults. Under sudo the environment is not used
 * (dropSudoEnvironment): `ignored` names what was dropped.
 */
export function resolveStore(
  flags: {store?: string; keyFile?: string},
  env: NodeJS.ProcessEnv = process.env,
  uid = process.getuid?.() ?? -1,
): {spec: string; keyFile?: string; ignored: string[]} {
  const ignored = dropSudoEnvironment(env, uid)
  const store = flags.store || env.TFACTL_STORE
  const keyFile = flags.keyFile || env.TFACTL_KEY_FILE
  const config = store && keyFile ? {} : readConfig(env, uid)
  const given = store || config.store
  const spec = given ? (isDatabaseUrl(given) ? given : resolve(given)) : defaultStorePath(env, uid)
  const key = keyFile || config.keyFile
  return {spec, keyFile: key ? resolve(key) : isDatabaseUrl(spec) ? DEFAULT_KEY_FILE : undefined, ignored}
}

/** The warning for `ignored` (resolveStore), or undefined when nothing was. */
export const ignoredWarning = (ignored: string[]): string | undefined =>
  ignored.length === 0
    ? undefined
    : `under sudo the environment does not choose the store: ${ignored.join(', ')} ignored (give --store or --key-file, or use the config file)`
