// The standalone executable's entry (Node's single-executable applications; scripts/package.mjs
// builds it): /usr/bin/tfactl runs with no Node installed. It does what bin/run.js does, with every
// file bin/run.js reads coming from the executable's own assets instead: the three bundles and
// their V8 code caches (the same files, made by `npm run build`), the prompts and the QR code
// library (bundled apart, since the npm CLI finds them in node_modules), package.json's oclif
// settings and oclif.manifest.json (given to oclif from memory), and the lock addon.
//
// The lock addon is native code, so it is never written to a temporary directory and never
// loaded from a file someone other than root could change: it is loaded from LIB_DIR
// (/usr/lib/tfactl, shipped by the package), after checking, on the descriptor it opened, that
// the file and its directory are root's and not writable by group or others, and that its bytes
// are the very bytes inside the executable; dlopen then opens that same descriptor.
import fs from 'node:fs'
import Module, {createRequire} from 'node:module'
import {dirname, join} from 'node:path'
import {getRawAsset} from 'node:sea'
import {fileURLToPath} from 'node:url'
import vm from 'node:vm'

/** <prefix>/lib/tfactl beside <prefix>/bin/tfactl (process.execPath is the real path, from /proc/self/exe). */
const LIB_DIR = join(dirname(process.execPath), '..', 'lib', 'tfactl')
const ADDON = 'fs-native-extensions.node'
/** What the bundles require from node_modules, and the asset that holds it. */
const PACKAGES: Record<string, string> = {'@inquirer/prompts': 'prompts.cjs', qrcode: 'qrcode.cjs'}

interface Loaded {
  exports: unknown
}
const loaded = new Map<string, Loaded>() // virtual path (LIB_DIR/dist/<bundle>) → module
/** An asset's bytes, in place (getRawAsset does not copy them; getAsset would, and decodes text through TextDecoder). */
const bytes = (name: string) => Buffer.from(getRawAsset(name) as ArrayBuffer)
const text = (name: string) => bytes(name).toString('utf8')

/** A bundle from the assets, compiled with its code cache when it has one, run as require() would. */
function requireAsset(name: string): unknown {
  const file = join(LIB_DIR, 'dist', name)
  const done = loaded.get(file)
  if (done) return done.exports
  let cachedData: Buffer | undefined
  try {
    cachedData = bytes(`${name}.v8cache`)
  } catch {
    // none: compile from source
  }
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${text(name)}\n})`, {filename: file, cachedData})
  const module: Loaded = {exports: {}}
  loaded.set(file, module)
  script.runInThisContext()(module.exports, requireFor(file), module, file, dirname(file))
  return module.exports
}

/**
 * The require a bundle gets: sibling bundles, the packages above and the lock addon from the
 * executable; oclif's own require of the CLI bundle and of package.json from memory; Node's
 * built-in modules as usual. `createRequire` hands out the same, so the lock module's
 * createRequire(import.meta.url) finds the addon here too.
 */
function requireFor(file: string): NodeJS.Require {
  const plain = createRequire(file)
  const require = (id: string): unknown => {
    const done = loaded.get(id)
    if (done) return done.exports
    if (id.startsWith('./') && id.endsWith('.cjs')) return requireAsset(id.slice(2))
    if (Object.hasOwn(PACKAGES, id)) return requireAsset(PACKAGES[id])
    if (id.startsWith('fs-native-extensions/prebuilds/')) return loadAddon()
    if (id === join(LIB_DIR, 'package.json')) return pjson()
    if (id === 'node:module' || id === 'module') return moduleWithOurRequire
    return plain(id)
  }
  return Object.assign(require, plain)
}

const moduleWithOurRequire = Object.assign(Object.create(Module), {
  createRequire: (from: string | URL) => requireFor(String(from).startsWith('file:') ? fileURLToPath(from) : String(from)),
})

let pjsonCache: unknown
const pjson = () => {
  pjsonCache ??= JSON.parse(text('package.json'))
  return pjsonCache
}

const safe = (st: fs.Stats) => st.uid === 0 && (st.mode & 0o022) === 0

/**
 * Loads the lock addon from LIB_DIR/ADDON, checked as the top of this file says. When root runs
 * an executable whose addon is missing or differs (copied to another host, a damaged install),
 * it writes the right one there first: a new file in root's own directory, renamed into place.
 */
function loadAddon(): unknown {
  const want = bytes(ADDON)
  const path = join(LIB_DIR, ADDON)
  let fd = openAddon(path)
  try {
    if (fd === undefined || !fs.readFileSync(fd).equals(want)) {
      if (process.geteuid?.() !== 0) throw new Error(`${path} is missing or is not this executable's: reinstall the tfactl package`)
      if (fd !== undefined) fs.closeSync(fd)
      fd = undefined
      installAddon(path, want)
      fd = openAddon(path)
      if (fd === undefined || !fs.readFileSync(fd).equals(want)) throw new Error(`${path} could not be written`)
    }
    const module = {exports: {}}
    // The descriptor checked above, not the path: nothing can swap the file in between.
    process.dlopen(module, `/proc/self/fd/${fd}`)
    return module.exports
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/** The addon's descriptor, once it and its directory are found root's and not writable by others; undefined when missing. */
function openAddon(path: string): number | undefined {
  const dir = fs.lstatSync(LIB_DIR, {throwIfNoEntry: false})
  if (!dir) return undefined
  if (!dir.isDirectory() || !safe(dir)) throw new Error(`${LIB_DIR} must be a directory of root's that group and others cannot write`)
  let fd: number
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  const st = fs.fstatSync(fd)
  if (!st.isFile() || !safe(st)) {
    fs.closeSync(fd)
    throw new Error(`${path} must be a file of root's that group and others cannot write`)
  }
  return fd
}

function installAddon(path: string, bytes: Buffer): void {
  fs.mkdirSync(LIB_DIR, {recursive: true, mode: 0o755})
  const temp = `${path}.new-${process.pid}`
  const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644)
  try {
    fs.writeFileSync(fd, bytes)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(temp, path)
}

interface PluginClass {
  prototype: {_manifest(this: {isRoot?: boolean; hasManifest?: boolean; commandIDs?: string[]}): Promise<unknown>}
}

const command = process.argv[2]
const fast =
  command === 'login:check'
    ? (requireAsset('fast-bundle.cjs') as {fastLoginCheck(args: string[]): Promise<boolean>}).fastLoginCheck(process.argv.slice(3))
    : command === 'twofactor:status'
      ? (requireAsset('fast-bundle.cjs') as {fastStatus(args: string[]): Promise<boolean>}).fastStatus(process.argv.slice(3))
      : Promise.resolve(false)

fast.then(async (handled) => {
  if (handled) return
  const {execute, Plugin} = requireAsset('cli-bundle.cjs') as {execute(options: object): Promise<unknown>; Plugin: PluginClass}
  // The root plugin's manifest from memory (oclif would read LIB_DIR/oclif.manifest.json).
  const manifest = JSON.parse(text('oclif.manifest.json')) as {commands: object}
  const readManifest = Plugin.prototype._manifest
  Plugin.prototype._manifest = async function () {
    if (!this.isRoot) return readManifest.call(this)
    this.hasManifest = true
    this.commandIDs = Object.keys(manifest.commands)
    return manifest
  }
  await execute({loadOptions: {root: LIB_DIR, pjson: pjson()}})
})
