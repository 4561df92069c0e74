import {execFile, spawn} from 'node:child_process'
import {readFileSync, rmSync} from 'node:fs'
import {join, resolve} from 'node:path'
import {tempDir} from './cleanup.js'

export const ROOT = resolve(import.meta.dirname, '..', '..')
export const BIN = join(ROOT, 'bin', 'run.js')

export interface Run {
  code: number
  stdout: string
  stderr: string
  /** stdout parsed as JSON (undefined when it is not JSON). */
  json: any
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv
  input?: string
  timeoutMs?: number
}

/** Runs the real CLI (the built `bin/run.js`), as a user or script would. */
export function tfactl(args: string[], opts: RunOptions = {}): Promise<Run> {
  return new Promise((done, fail) => {
    const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1', ...opts.env}
    delete env.TFACTL_STORE
    delete env.NODE_ENV // vitest sets `test`; the CLI must run as users run it
    delete env.SUDO_USER
    if (opts.env?.TFACTL_STORE) env.TFACTL_STORE = opts.env.TFACTL_STORE
    if (opts.env?.SUDO_USER) env.SUDO_USER = opts.env.SUDO_USER
    const child = execFile(process.execPath, [BIN, ...args], {env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20}, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0
      if (error && typeof error.code !== 'number') return fail(error)
      done({code, stdout, stderr, json: jsonOf(stdout)})
    })
    child.stdin!.end(opts.input ?? '')
  })
}

/** A private temporary directory with a store path in it; `cleanup()` removes it (else the end of the test file). */
export function tempStore() {
  const dir = tempDir('tfactl-test-')
  const path = join(dir, 'state', 'store.json')
  return {
    dir,
    path,
    /** The CLI bound to this store. */
    run: (args: string[], opts: RunOptions = {}) => tfactl([...args, '--store', path], opts),
    bytes: (): Buffer | undefined => {
      try {
        return readFileSync(path)
      } catch {
        return undefined
      }
    },
    cleanup: () => rmSync(dir, {recursive: true, force: true}),
  }
}

/** A code from `oathtool`, the reference client (like a phone app would show). */
export function oathtool(secret: string, opts: {interval?: number; digits?: number; now?: string} = {}): Promise<string> {
  const args = ['--totp', '-b', secret]
  if (opts.interval) args.push('-s', `${opts.interval}s`)
  if (opts.digits) args.push('-d', String(opts.digits))
  if (opts.now) args.push('-N', opts.now)
  return new Promise((done, fail) => {
    const child = spawn('oathtool', args)
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.on('error', fail)
    child.on('close', (code) => (code === 0 ? done(out.trim()) : fail(new Error(`oathtool exited ${code}`))))
  })
}

/** The JSON a command printed, or undefined when stdout is not one JSON document. */
export function jsonOf(stdout: string): any {
  try {
    return JSON.parse(stdout)
  } catch {
    return undefined
  }
}
