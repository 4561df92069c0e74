// Runs the real CLI (`bin/run.js`) with a small preload that watches its file operations in
// the store's directory, so that a test can:
// - SIGKILL it at an exact moment of a write (before or after its N-th file operation there),
//   the way a power cut or `kill -9` would, only reproducibly;
// - learn when, relative to its start, the writes happen (to aim kills from outside);
// - stop it right after it read a given file, until the test lets it go on (a process the
//   scheduler put to sleep at an unlucky moment).
// The preload only observes and kills; it never changes what the CLI does.
import {spawn} from 'node:child_process'
import {existsSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {BIN} from './cli.js'
import {tempDir} from './cleanup.js'

const PRELOAD = String.raw`
import {createRequire, syncBuiltinESMExports} from 'node:module'
const require = createRequire(import.meta.url)
const fs = require('node:fs')
const env = process.env
const dir = env.TFACTL_WATCH_DIR
const log = env.TFACTL_WATCH_LOG
const crash = /^(\d+)(\+?)$/.exec(env.TFACTL_CRASH_AT ?? '')
const crashAt = crash ? Number(crash[1]) : 0
const crashAfter = crash ? crash[2] === '+' : false
const pauseAfter = env.TFACTL_PAUSE_AFTER_READ
const pauseGo = env.TFACTL_PAUSE_GO
const orig = {}
for (const name of ['openSync', 'writeSync', 'writeFileSync', 'appendFileSync', 'fsyncSync', 'fdatasyncSync', 'closeSync',
  'renameSync', 'linkSync', 'unlinkSync', 'rmSync', 'mkdirSync', 'fchmodSync', 'fchownSync', 'chmodSync', 'chownSync',
  'ftruncateSync', 'truncateSync', 'copyFileSync', 'symlinkSync', 'readFileSync', 'existsSync']) orig[name] = fs[name]
const fds = new Map()
let count = 0
const inDir = (p) => typeof p === 'string' && dir && (p === dir || p.startsWith(dir + '/'))
const note = (line) => { if (log) orig.appendFileSync(log, line + '\n') }
const die = (n) => {
  note('KILL ' + n)
  process.kill(process.pid, 'SIGKILL')
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000)
}
const watch = (name, target) => (...args) => {
  const t = target(args)
  if (t === undefined) return orig[name](...args)
  const n = ++count
  note(n + '\t' + name + '\t' + t + '\t' + Date.now())
  if (n === crashAt && !crashAfter) die(n)
  let result
  try {
    result = orig[name](...args)
  } finally {
    // Nested operations of op n are part of it; an op that failed (ENOENT of an optional file, a
    // refused link) is done too: the kill must not be skipped because the op threw.
    if (n === crashAt && crashAfter) die(n)
  }
  if (name === 'openSync') fds.set(result, args[0])
  if (name === 'closeSync') fds.delete(args[0])
  return result
}
const byPath = (args) => (inDir(args[0]) ? args[0] : undefined)
const byPathOrFd = (args) => (typeof args[0] === 'number' ? fds.get(args[0]) : byPath(args))
const byEither = (args) => (inDir(args[0]) || inDir(args[1]) ? args[0] + ' -> ' + args[1] : undefined)
for (const name of ['openSync', 'unlinkSync', 'rmSync', 'mkdirSync', 'chmodSync', 'chownSync', 'truncateSync']) fs[name] = watch(name, byPath)
for (const name of ['writeFileSync', 'appendFileSync']) fs[name] = watch(name, byPathOrFd)
for (const name of ['writeSync', 'fsyncSync', 'fdatasyncSync', 'closeSync', 'fchmodSync', 'fchownSync', 'ftruncateSync']) fs[name] = watch(name, (a) => fds.get(a[0]))
for (const name of ['renameSync', 'linkSync', 'copyFileSync', 'symlinkSync']) fs[name] = watch(name, byEither)
if (pauseAfter && pauseGo) {
  let paused = false
  fs.readFileSync = (...args) => {
    const result = orig.readFileSync(...args)
    if (!paused && (typeof args[0] === 'number' ? fds.get(args[0]) : args[0]) === pauseAfter) {
      paused = true
      orig.writeFileSync(pauseGo + '.paused', '')
      const until = Date.now() + 30000
      while (!orig.existsSync(pauseGo) && Date.now() < until) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10)
    }
    return result
  }
}
syncBuiltinESMExports()
`

let preloadPath: string | undefined
/** The preload module, written once per test process. */
function preload(): string {
  if (!preloadPath) {
    // removed at the end of the test file (a worker may end without an 'exit' event)
    preloadPath = join(tempDir('tfactl-preload-'), 'watch.mjs')
    writeFileSync(preloadPath, PRELOAD)
  }
  return preloadPath
}

/** One file operation the CLI made in the watched directory. */
export interface Op {
  n: number
  name: string
  target: string
  /** Milliseconds after the process was spawned. */
  atMs: number
}

export interface WatchedRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  json: any
  /** File operations in the watched directory, in order, up to the kill. */
  ops: Op[]
  /** The operation count at which the preload killed the process, if it did. */
  killedAt?: number
  elapsedMs: number
}

export interface WatchOptions {
  /** Directory whose file operations are counted (the store's directory). */
  dir: string
  /** SIGKILL just before operation N (`{op: N}`), or just after it (`{op: N, after: true}`). */
  crashAt?: {op: number; after?: boolean}
  /** SIGKILL from outside after this many milliseconds. */
  killAfterMs?: number
  /** Stop right after reading this file until `resume()` of the returned handle. */
  pauseAfterReading?: string
  input?: string
  env?: NodeJS.ProcessEnv
  timeoutMs?: number
}

export interface WatchedProcess {
  done: Promise<WatchedRun>
  /** Resolves once the process is stopped after reading `pauseAfterReading`. */
  paused: () => Promise<void>
  resume: () => void
}

/** Starts `bin/run.js args` under the preload; see WatchOptions. */
export function watched(args: string[], opts: WatchOptions): WatchedProcess {
  const work = tempDir('tfactl-watch-')
  const log = join(work, 'ops.log')
  const go = join(work, 'go')
  const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1', ...opts.env, TFACTL_WATCH_DIR: opts.dir, TFACTL_WATCH_LOG: log}
  delete env.TFACTL_STORE
  delete env.SUDO_USER
  if (opts.env?.SUDO_USER) env.SUDO_USER = opts.env.SUDO_USER
  if (opts.crashAt) env.TFACTL_CRASH_AT = `${opts.crashAt.op}${opts.crashAt.after ? '+' : ''}`
  if (opts.pauseAfterReading) Object.assign(env, {TFACTL_PAUSE_AFTER_READ: opts.pauseAfterReading, TFACTL_PAUSE_GO: go})
  const started = Date.now()
  const child = spawn(process.execPath, ['--import', preload(), BIN, ...args], {env, stdio: ['pipe', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  child.stdin.on('error', () => {}) // a killed child closes its stdin early
  child.stdin.end(opts.input ?? '')
  const timers = [setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000)]
  if (opts.killAfterMs !== undefined) timers.push(setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs))
  const done = new Promise<WatchedRun>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      for (const t of timers) clearTimeout(t)
      const elapsedMs = Date.now() - started
      const lines = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []
      rmSync(work, {recursive: true, force: true})
      const ops: Op[] = []
      let killedAt: number | undefined
      for (const line of lines) {
        if (line.startsWith('KILL ')) {
          killedAt = Number(line.slice(5))
          continue
        }
        const [n, name, target, at] = line.split('\t')
        ops.push({n: Number(n), name, target, atMs: Number(at) - started})
      }
      let json: any
      try {
        json = JSON.parse(stdout)
      } catch {
        json = undefined
      }
      resolve({code, signal, stdout, stderr, json, ops, killedAt, elapsedMs})
    })
  })
  return {
    done,
    paused: async () => {
      while (!existsSync(`${go}.paused`)) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited before pausing: ${stderr}`)
        await sleep(10)
      }
    },
    resume: () => writeFileSync(go, ''),
  }
}

/** `watched(...).done`: runs to the end or to the requested kill. */
export const runWatched = (args: string[], opts: WatchOptions): Promise<WatchedRun> => watched(args, opts).done
