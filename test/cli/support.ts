// Shared by the CLI and interop tests: small wrappers over test/helpers/cli.ts that
// speak the JSON contract, plus care for TOTP step boundaries.
import {chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, expect} from 'vitest'
import {type Run, type RunOptions, tempStore, tfactl} from '../helpers/cli.js'
import {type PgServer, startPostgres} from '../helpers/postgres.js'

export type TempStore = ReturnType<typeof tempStore>

/** Turns 2FA on (failed checks answer at once) with extra settings; asserts success. */
export async function enable(store: TempStore, ...flags: string[]): Promise<any> {
  const r = await store.run(['twofactor:enable', '--fail-delay', '0', ...flags, '--json'])
  expect(r.code, r.stderr).toBe(0)
  return r.json
}

/** Enrols one user non-interactively; returns its entry from `users`. */
export async function renew(store: TempStore, user: string, ...flags: string[]): Promise<any> {
  const r = await store.run(['user:secret:renew', user, '--qr', 'none', ...flags, '--json'])
  expect(r.code, r.stderr).toBe(0)
  expect(r.json.users).toHaveLength(1)
  return r.json.users[0]
}

export interface CheckOptions {
  code?: string
  service?: 'ui' | 'ssh'
  method?: 'password' | 'key'
}

/** `login:check --json`; the exit code is checked against `allowed` by the caller via `expectDecision`. */
export function check(store: TempStore, user: string, opts: CheckOptions = {}, run: RunOptions = {}): Promise<Run> {
  const args = ['login:check', user, '--json']
  if (opts.service) args.push('--service', opts.service)
  if (opts.method) args.push('--method', opts.method)
  if (opts.code !== undefined) args.push('--code', opts.code)
  return store.run(args, run)
}

/** Asserts the documented exit code (0 allowed, 1 denied) goes with the JSON decision. */
export function expectDecision(r: Run, allowed: boolean, reason: string, setupPrompt = false): void {
  expect(r.json, `stdout: ${r.stdout} stderr: ${r.stderr}`).toMatchObject({allowed, reason, setupPrompt})
  expect(r.code).toBe(allowed ? 0 : 1)
}

/** Asserts a failure: documented exit code, one JSON document with `error.message`. */
export function expectJsonError(r: Run, exit: number): string {
  expect(r.code, `stdout: ${r.stdout} stderr: ${r.stderr}`).toBe(exit)
  expect(r.json, `stdout is not one JSON document: ${r.stdout}`).toBeTypeOf('object')
  expect(r.json.error?.message).toBeTypeOf('string')
  expect(r.json.error.message.length).toBeGreaterThan(0)
  return r.json.error.message
}

/** The TOTP step (RFC 6238 counter) at `ms` for `interval` seconds. */
export const stepAt = (interval: number, ms = Date.now()): number => Math.floor(ms / 1000 / interval)

/** Waits, if needed, until at least `margin` seconds of the current step remain. */
export async function awayFromBoundary(interval: number, margin = 5): Promise<void> {
  const left = interval - ((Date.now() / 1000) % interval)
  if (left < margin) await sleep(left * 1000 + 200)
}

/**
 * Runs `attempt` so that it starts and ends inside one TOTP step; when a step boundary was
 * crossed anyway (a slow machine), it is run again, up to three times.
 */
export async function withinOneStep<T>(interval: number, attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    await awayFromBoundary(interval)
    const before = stepAt(interval)
    const result = await attempt()
    if (stepAt(interval) === before || tries === 3) return result
  }
}

/** Writes `content` as the store file, private like a real one (dir 0700, file 0600). */
export function writeStore(store: TempStore, content: string | Buffer): void {
  mkdirSync(dirname(store.path), {recursive: true, mode: 0o700})
  writeFileSync(store.path, content, {mode: 0o600})
}

/** Copies another store's directory (store and key file) into `store`, modes included. */
export function copyStore(from: TempStore, store: TempStore): void {
  cpSync(dirname(from.path), dirname(store.path), {recursive: true})
}

/** True when a stderr holds a JavaScript stack trace. */
export const hasStack = (stderr: string): boolean => /^\s{4}at /m.test(stderr)

/** stderr lines that are not `tfactl: warning:` notes. */
export const errorLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('tfactl: warning:'))

/** A code of the same length that is not `code` (each digit shifted by 5). */
export const wrongCode = (code: string): string => [...code].map((d) => String((Number(d) + 5) % 10)).join('')

let seedTemplate: Promise<TempStore> | undefined
/**
 * A private copy of a store with 2FA on and alice and bob enrolled, written three times (so
 * `.bak` and tfactl.key exist). The template is made once per test file.
 */
export async function seededCopy(newStore: () => TempStore): Promise<TempStore> {
  seedTemplate ??= (async () => {
    const t = newStore()
    await enable(t)
    await renew(t, 'alice')
    await renew(t, 'bob')
    return t
  })()
  const source = await seedTemplate
  const store = newStore()
  cpSync(dirname(source.path), dirname(store.path), {recursive: true})
  chmodSync(dirname(store.path), 0o700)
  return store
}

/**
 * A maker of temp stores that are all removed once the test file is done (for files whose tests
 * share stores or run concurrently).
 */
export function trackedStores(): () => TempStore {
  const stores: TempStore[] = []
  afterAll(() => {
    for (const s of stores) s.cleanup()
  })
  return () => {
    const s = tempStore()
    stores.push(s)
    return s
  }
}

/**
 * A maker of temp stores on either backend for a test file: a store file, or a fresh database
 * (`<prefix>N`) on a throwaway PostgreSQL started for the file, reached with a key file of its own.
 * Every store, and the server, is removed once the file is done.
 */
export function backendStores(prefix: string): (backend: 'file' | 'postgres') => Promise<TempStore> {
  let pg: PgServer | undefined
  const made: TempStore[] = []
  beforeAll(async () => {
    pg = await startPostgres()
  })
  afterAll(() => {
    for (const s of made) s.cleanup()
    pg?.destroy()
  })
  let dbs = 0
  return async (backend) => {
    const s = tempStore()
    made.push(s)
    if (backend === 'file') return s
    const url = await pg!.database(`${prefix}${++dbs}`)
    mkdirSync(join(s.dir, 'keys'), {mode: 0o700})
    const keyFile = join(s.dir, 'keys', 'tfactl.key')
    return {...s, path: url, run: (args, opts = {}) => tfactl([...args, '--store', url, '--key-file', keyFile], opts)}
  }
}

/** A host of a fleet: the CLI with its own key file, bound to the database `url` (its key as --key-file, or in TFACTL_KEY_FILE). */
export function dbHost(url: string, keyFile: string, dir: string, how: 'flag' | 'env' = 'flag'): TempStore {
  const run = (args: string[], opts: RunOptions = {}) =>
    how === 'flag'
      ? tfactl([...args, '--store', url, '--key-file', keyFile], opts)
      : tfactl([...args, '--store', url], {...opts, env: {...opts.env, TFACTL_KEY_FILE: keyFile}})
  return {run, path: url, dir, bytes: () => undefined, cleanup: () => {}} as TempStore
}

/** A fresh database `name` on `pg` and host A on it; `hostB()` copies A's key file (how a host joins) and gives it `bHow`. */
export async function dbFleet(pg: PgServer, work: string, name: string, bHow: 'flag' | 'env' = 'flag') {
  const url = await pg.database(name)
  const keys = join(work, name)
  const a = dbHost(url, join(keys, 'a', 'tfactl.key'), work)
  const hostB = () => {
    mkdirSync(join(keys, 'b'), {recursive: true, mode: 0o700})
    copyFileSync(join(keys, 'a', 'tfactl.key'), join(keys, 'b', 'tfactl.key'))
    return dbHost(url, join(keys, 'b', 'tfactl.key'), work, bHow)
  }
  const psql = (sql: string) => pg.tool('psql', ['-qc', sql, name])
  return {name, url, keys, a, hostB, psql}
}

/**
 * A test file's PostgreSQL fleets: a throwaway server and a work directory made before its tests
 * and removed after them, even when they fail. `fleet()` is a fresh database `<prefix>N` with
 * host A on it (dbFleet); `host()` another host with a key file of its own.
 */
export function dbFleets(prefix: string, bHow: 'flag' | 'env' = 'flag') {
  let pg: PgServer | undefined
  let work: string | undefined
  let count = 0
  beforeAll(async () => {
    pg = await startPostgres()
    work = mkdtempSync(join(tmpdir(), `tfactl-${prefix}-`))
  })
  afterAll(() => {
    pg?.destroy()
    if (work) rmSync(work, {recursive: true, force: true})
  })
  return {
    get pg(): PgServer {
      return pg!
    },
    get work(): string {
      return work!
    },
    host: (url: string, keyFile: string) => dbHost(url, keyFile, work!),
    fleet: () => dbFleet(pg!, work!, `${prefix}${++count}`, bHow),
  }
}
