// Store durability: concurrent processes lose no update and never show a reader a half-written
// file; a writer SIGKILLed at any moment leaves the old or the new store, never a broken one,
// and nothing it leaves behind (temp file, lock file) blocks the next write; a store that cannot
// be read is refused with exit 3 and never overwritten; `.bak` keeps the previous valid store.
import {spawn} from 'node:child_process'
import {createHmac, randomBytes} from 'node:crypto'
import {cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {pathToFileURL} from 'node:url'
import {beforeAll, describe, expect, it} from 'vitest'
import {oathtool, ROOT} from '../helpers/cli.js'
import {runWatched, type WatchedRun} from '../helpers/crash-writer.js'
import {check, enable, expectDecision, expectJsonError, renew, type TempStore, writeStore, seededCopy, trackedStores} from './support.js'
import {prng, SEED} from '../helpers/random.js'

// Every store a test makes is removed once the file is done (tests here may run concurrently).
const newStore = trackedStores()

// --- helpers ---------------------------------------------------------------------------------

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
/** A fresh base32 TOTP secret of 20 random bytes. */
function newSecret(): string {
  let bits = ''
  for (const byte of randomBytes(20)) bits += byte.toString(2).padStart(8, '0')
  return bits
    .match(/.{5}/g)!
    .map((b) => B32[parseInt(b, 2)])
    .join('')
}

/** The RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret for time step `step`. */
function totp(secret: string, step: number): string {
  let bits = ''
  for (const c of secret) bits += B32.indexOf(c).toString(2).padStart(5, '0')
  const key = Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)))
  const counter = Buffer.alloc(8)
  counter.writeBigUInt64BE(BigInt(step))
  const mac = createHmac('sha1', key).update(counter).digest()
  const offset = mac[19] & 0xf
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0')
}

const mode = (path: string): number => statSync(path).mode & 0o777
const leftoverTemps = (store: TempStore): string[] => readdirSync(dirname(store.path)).filter((n) => n.includes('.tmp-'))

// The project's own reader, loaded from the build: the same validation `store:check` runs
// (Store.read plus the key and backup checks), without starting a process for every look.
const dist = async (file: string) => import(pathToFileURL(join(ROOT, 'dist', file)).href)

/** The settings and every user's state (secrets decrypted), as compared between runs. */
type State = string

/** Validates the store like `store:check` does and returns its state; throws when invalid. */
async function validState(store: TempStore): Promise<State> {
  const {Store} = await dist('store/file/store.js')
  const {checkPrivateFile} = await dist('os/files.js')
  const s = new Store(store.path)
  const doc = await s.read()
  checkPrivateFile(store.path)
  checkPrivateFile(s.files.key)
  checkPrivateFile(s.files.backup)
  const users = [...doc.users].sort(([a], [b]) => (a < b ? -1 : 1))
  return JSON.stringify({
    settings: doc.settings,
    users: users.map(([name, u]: [string, any]) => [
      name,
      {
        secret: u.secret,
        interval: u.interval,
        digits: u.digits,
        algorithm: u.algorithm,
        lastUsedStep: u.lastUsedStep,
        failures: u.failures,
        lockedUntil: u.lockedUntil,
        recovery: u.recovery?.hashes.length ?? null,
        bypass: Boolean(u.bypass),
        pending: u.pending?.secret ?? null,
      },
    ]),
  })
}

/** `store:check --json` through the real CLI: exit 0 and valid. */
async function expectStoreCheckPasses(store: TempStore, context = ''): Promise<void> {
  const r = await store.run(['store:check', '--json'])
  expect(r.code, `${context} ${r.stdout} ${r.stderr}`).toBe(0)
  expect(r.json).toMatchObject({valid: true, exists: true})
}

// --- 1. concurrency --------------------------------------------------------------------------

type Step = 'renew' | 'check' | 'wrong' | 'unset'
/**
 * Each process owns three users and runs these sequences interleaved (a, b, c, a, b, c, …):
 * 9 + 8 + 8 = 25 mutations. Every `check` uses a code of the user's latest secret, so a renewal
 * lost to another process shows up at once as a denied login.
 */
const SEQUENCES: Record<'a' | 'b' | 'c', Step[]> = {
  a: ['renew', 'wrong', 'check', 'unset', 'renew', 'check', 'renew', 'wrong', 'check'], // ends configured, last login recorded
  b: ['renew', 'check', 'unset', 'renew', 'wrong', 'check', 'renew', 'unset'], // ends with no record at all
  c: ['renew', 'unset', 'renew', 'check', 'wrong', 'renew', 'check', 'wrong'], // ends configured with one failure
}
const PROCESSES = 8

interface UserTrace {
  secret: string | null
  /** When the last accepted check of the current secret started and ended. */
  lastLogin: [number, number] | null
  failures: number
}

/** What the storm left: each user's expected final state, and what the readers saw. */
interface Storm {
  store: TempStore
  traces: Record<string, UserTrace>
  fileReads: number
  cliReads: number
}

/**
 * 8 processes make 25 mixed renew/unset/login:check mutations each on one store, while a reader
 * in this process reads the file as fast as it can and CLI readers run twofactor:status. Every
 * answer is checked as it comes; the final state is checked by the tests below.
 */
async function storm(): Promise<Storm> {
  const store = newStore()
  await enable(store)
  const wrongCode = (right: string) => String((Number(right) + 500_000) % 1_000_000).padStart(6, '0')

  let storming = true
  // A reader in this process, as fast as it can: the file at the store path is always complete JSON.
  let fileReads = 0
  const fileReader = (async () => {
    while (storming) {
      let text: string | undefined
      try {
        text = readFileSync(store.path, 'utf8')
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      }
      if (text !== undefined) {
        expect(() => JSON.parse(text!), `a reader saw a partial store: ${JSON.stringify(text!.slice(-80))}`).not.toThrow()
        expect(JSON.parse(text).version).toBeTypeOf('number')
        fileReads++
      }
      await sleep(2)
    }
  })()
  // Readers through the CLI (which decrypt every secret) never fail either; a few, spread
  // over the storm, so that they do not slow the writers down much.
  let cliReads = 0
  const cliReader = (async () => {
    while (storming && cliReads < 12) {
      const r = await store.run(['twofactor:status', '--json'], {timeoutMs: 120_000})
      expect(r.code, `a concurrent reader failed: ${r.stdout} ${r.stderr}`).toBe(0)
      expect(r.json.users.configured).toBeTypeOf('number')
      cliReads++
      await sleep(1000)
    }
  })()

  const worker = async (p: number): Promise<Record<string, UserTrace>> => {
    const traces: Record<string, UserTrace> = {}
    const names = (['a', 'b', 'c'] as const).map((s) => `p${p}-${s}`)
    for (const name of names) traces[name] = {secret: null, lastLogin: null, failures: 0}
    const position = {a: 0, b: 0, c: 0}
    for (let s = 0; s < 25; s++) {
      const suffix = (['a', 'b', 'c'] as const)[s % 3]
      const user = `p${p}-${suffix}`
      const step = SEQUENCES[suffix][position[suffix]++]
      const t = traces[user]
      const where = `process ${p} step ${s} (${step} ${user})`
      if (step === 'renew') {
        const r = await store.run(['user:secret:renew', user, '--qr', 'none', '--json'], {timeoutMs: 120_000})
        expect(r.code, `${where}: ${r.stderr}`).toBe(0)
        Object.assign(t, {secret: r.json.users[0].secret, lastLogin: null, failures: 0})
      } else if (step === 'unset') {
        const r = await store.run(['user:secret:unset', user, '--yes', '--json'], {timeoutMs: 120_000})
        expect(r.code, `${where}: ${r.stderr}`).toBe(0)
        expect(r.json, where).toMatchObject({user, changed: true})
        Object.assign(t, {secret: null, lastLogin: null, failures: 0})
      } else {
        const right = await oathtool(t.secret!)
        const started = Date.now()
        const r = await check(store, user, {code: step === 'check' ? right : wrongCode(right)}, {timeoutMs: 120_000})
        if (step === 'check') {
          expect(r.json, `${where}: ${r.stdout} ${r.stderr}`).toMatchObject({allowed: true, reason: 'code_accepted'})
          expect(r.code).toBe(0)
          Object.assign(t, {lastLogin: [started, Date.now()], failures: 0})
        } else {
          expect(r.json, `${where}: ${r.stdout} ${r.stderr}`).toMatchObject({allowed: false, reason: 'code_invalid'})
          expect(r.code).toBe(1)
          t.failures++
        }
      }
    }
    return traces
  }

  try {
    const results = await Promise.all(Array.from({length: PROCESSES}, (_, p) => worker(p)))
    return {store, traces: Object.assign({}, ...results), fileReads, cliReads}
  } finally {
    storming = false
    await Promise.all([fileReader, cliReader])
  }
}

describe('8 processes making 25 mixed renew/unset/login:check mutations each on one store', () => {
  let result: Storm
  beforeAll(async () => {
    result = await storm()
  }, 600_000)
  const enrolled = () =>
    Object.keys(result.traces)
      .filter((u) => result.traces[u].secret)
      .sort()

  it('let readers of the file and of the CLI see a whole store every time', () => {
    expect(result.fileReads).toBeGreaterThan(0)
    expect(result.cliReads).toBeGreaterThan(0)
  })

  it('lose no update: every expected user is there, and nothing else, with its last login time', async () => {
    const list = await result.store.run(['user:list', '--json'])
    expect(list.code, list.stderr).toBe(0)
    expect(enrolled()).toHaveLength(2 * PROCESSES)
    expect(list.json.users.map((u: any) => u.user).sort()).toEqual(enrolled())
    for (const u of list.json.users) {
      const t = result.traces[u.user]
      expect(u.configured, u.user).toBe(true)
      expect(t.lastLogin, u.user).not.toBeNull()
      const at = Date.parse(u.lastUsedAt)
      expect(at, `${u.user}: lastUsedAt ${u.lastUsedAt} is not the time of its last accepted login`).toBeGreaterThanOrEqual(t.lastLogin![0] - 1000)
      expect(at, `${u.user}: lastUsedAt ${u.lastUsedAt}`).toBeLessThanOrEqual(t.lastLogin![1] + 1000)
    }
  })

  it("keep each user's secret from its last renewal and count every failure", async () => {
    const {Store} = await dist('store/file/store.js')
    const doc = await new Store(result.store.path).read()
    for (const user of enrolled()) {
      expect(doc.users.get(user).secret, user).toBe(result.traces[user].secret)
      expect(doc.users.get(user).failures, user).toBe(result.traces[user].failures)
    }
  })

  it('leave a valid, private store and no temp file', async () => {
    const {store} = result
    expect(() => JSON.parse(readFileSync(store.path, 'utf8'))).not.toThrow()
    expect(mode(store.path)).toBe(0o600)
    expect(mode(dirname(store.path))).toBe(0o700)
    expect(mode(`${store.path}.bak`)).toBe(0o600)
    expect(leftoverTemps(store)).toEqual([])
    await expectStoreCheckPasses(store)
  })

  it('record every one of the 200 mutations in the audit log', () => {
    const audit = readFileSync(`${result.store.path}.audit.log`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    const counted = (command: string) => audit.filter((e) => e.command === command).length
    const planned = (step: Step) =>
      PROCESSES *
      Object.values(SEQUENCES)
        .flat()
        .filter((s) => s === step).length
    expect(audit).toHaveLength(1 + PROCESSES * 25)
    expect(counted('user:secret:renew')).toBe(planned('renew'))
    expect(counted('user:secret:unset')).toBe(planned('unset'))
    expect(counted('login:check')).toBe(planned('check') + planned('wrong'))
  })
})

// --- 2. crash safety ---------------------------------------------------------------------------

/** A mutation whose outcome is known in advance, so a store can be compared to it. */
interface Mutation {
  label: string
  args: string[]
  input?: string
  /** The state after the mutation completes, from the state before (JSON of validState). */
  after: (before: State) => State
}

function mutations(rng: () => number, current: State): Mutation {
  const int = (n: number) => Math.floor(rng() * n)
  const user = `u${int(3)}`
  const edit =
    (fn: (s: any) => void) =>
    (before: State): State => {
      const s = JSON.parse(before)
      fn(s)
      s.users.sort(([a]: [string], [b]: [string]) => (a < b ? -1 : 1))
      return JSON.stringify(s)
    }
  const record = (s: any) => s.users.find(([n]: [string]) => n === user)?.[1]
  switch (int(6)) {
    case 0: {
      const secret = newSecret()
      return {
        label: `import ${user}`,
        args: ['user:secret:import', user, '--secret-stdin', '--json'],
        input: secret,
        after: edit((s) => {
          s.users = s.users.filter(([n]: [string]) => n !== user)
          s.users.push([
            user,
            {
              secret,
              interval: 30,
              digits: 6,
              algorithm: 'SHA1',
              lastUsedStep: null,
              failures: 0,
              lockedUntil: null,
              recovery: null,
              bypass: false,
              pending: null,
            },
          ])
        }),
      }
    }
    case 1: {
      // 1-10, never 0: a code of the step a check starts in is still good in the next one.
      const window = 1 + ((JSON.parse(current).settings.window + int(9)) % 10)
      return {
        label: `enable --window ${window}`,
        args: ['twofactor:enable', '--window', String(window), '--json'],
        after: edit((s) => (s.settings.window = window)),
      }
    }
    case 2:
      return {
        label: `unset ${user}`,
        args: ['user:secret:unset', user, '--yes', '--json'],
        after: edit((s) => (s.users = s.users.filter(([n]: [string]) => n !== user))),
      }
    case 4:
      // A login (the hot path: one line appended to the store's journal). A code of the wrong
      // length is always code_invalid and counts one failure (the lockout is off).
      return {
        label: `check-wrong ${user}`,
        args: ['login:check', user, '--code', '00000', '--json'],
        after: edit((s) => {
          const r = record(s)
          if (r?.secret) r.failures++
        }),
      }
    case 5: {
      // The right code for the current step is accepted once: it records that step.
      const r = record(JSON.parse(current))
      const step = Math.floor(Date.now() / 30_000)
      const accepted = r?.secret && (r.lastUsedStep === null || r.lastUsedStep < step)
      return {
        label: `check-right ${user}`,
        args: ['login:check', user, '--code', r?.secret ? totp(r.secret, step) : '000000', '--json'],
        after: edit((s) => {
          if (accepted) Object.assign(record(s), {lastUsedStep: step, failures: 0, lockedUntil: null})
        }),
      }
    }
    default:
      // Secrets are the same before and after; what changes is the key that seals them.
      return {label: 'rotate-key', args: ['store:rotate-key', '--json'], after: (before) => before}
  }
}

/** Sets a store up with 2FA on and three users (u0, u1, u2) with secrets. */
async function seedCrashStore(store: TempStore): Promise<void> {
  await enable(store, '--max-failures', '0')
  for (const user of ['u0', 'u1', 'u2']) {
    const r = await store.run(['user:secret:import', user, '--secret-stdin', '--json'], {input: newSecret()})
    expect(r.code, r.stderr).toBe(0)
  }
}

interface LaneReport {
  runs: number
  killed: number
  killedLeavingBefore: number
  killedLeavingAfter: number
}

/**
 * `runs` writers on one store, one after the other, each SIGKILLed at a random moment of its
 * write: most at a random file operation (before or after it), the rest from outside after a
 * random delay spanning the measured write window. After each: the store validates and equals
 * the state before or the state after the write.
 */
async function crashLane(store: TempStore, runs: number, rng: () => number, lane: string): Promise<LaneReport> {
  const dir = dirname(store.path)
  const report: LaneReport = {runs: 0, killed: 0, killedLeavingBefore: 0, killedLeavingAfter: 0}
  // Measure each kind of write once, unkilled: how many file operations, and when they happen.
  const measured = new Map<string, {ops: number; fromMs: number; toMs: number}>()
  let state = await validState(store)
  for (const kind of ['check-wrong', 'check-right', 'import', 'enable', 'unset', 'rotate-key']) {
    let m: Mutation
    do m = mutations(rng, state)
    while (!m.label.startsWith(kind))
    const r = await runWatched([...m.args, '--store', store.path], {dir, input: m.input})
    expect(r.code, `${lane} measuring ${m.label}: ${r.stdout} ${r.stderr}`).toBe(kind === 'check-wrong' ? 1 : 0)
    const after = m.after(state)
    state = await validState(store)
    expect(state, `${lane} measuring ${m.label}`).toBe(after)
    measured.set(kind, {ops: r.ops.length, fromMs: r.ops[0].atMs, toMs: r.ops.at(-1)!.atMs})
  }

  for (let i = 0; i < runs; i++) {
    const m = mutations(rng, state)
    const before = state
    const after = m.after(before)
    const window = measured.get(m.label.split(' ')[0])!
    const fromOutside = i % 5 === 4
    // A planned kill lands on one of the write's own operations; completed runs come from the kills from outside.
    const crashAt = {op: 1 + Math.floor(rng() * window.ops), after: rng() < 0.5}
    const killAfterMs = Math.max(0, Math.round(window.fromMs - 30 + rng() * (window.toMs - window.fromMs + 60)))
    const where = `seed ${SEED} ${lane} run ${i}: ${m.label}, ${fromOutside ? `killed from outside after ${killAfterMs} ms` : `killed ${crashAt.after ? 'after' : 'before'} file operation ${crashAt.op}`}`
    const tempsBefore = leftoverTemps(store)
    const r: WatchedRun = await runWatched([...m.args, '--store', store.path], {
      dir,
      input: m.input,
      ...(fromOutside ? {killAfterMs} : {crashAt}),
    })
    report.runs++
    const killed = r.signal === 'SIGKILL'
    const ok = m.label.startsWith('check-') ? (r.json?.allowed ? 0 : 1) : 0
    if (!killed) expect(r.code, `${where}: not killed, so it must have succeeded: ${r.stdout} ${r.stderr}`).toBe(ok)
    if (!killed && m.label.startsWith('check-')) expect(r.json?.reason, where).toMatch(/^(code_accepted|code_invalid|code_replayed|no_secret)$/)
    // A planned kill happens exactly at its operation; a writer with fewer operations completes.
    if (!fromOutside && killed) expect(r.killedAt, `${where}: killed elsewhere`).toBe(crashAt.op)
    if (!fromOutside && !killed) {
      expect(r.ops.length, where).toBeLessThan(crashAt.op)
      // The same kind of write may take fewer operations from another state (a user enrolled
      // or not, a journal compacted or not): later kills are drawn within the shortest seen.
      window.ops = Math.max(1, Math.min(window.ops, r.ops.length))
    }

    // The store is whole, private and valid: the state before, or the state after.
    expect(existsSync(store.path), `${where}: the store is gone`).toBe(true)
    expect(statSync(store.path).size, `${where}: the store is empty`).toBeGreaterThan(0)
    expect(mode(store.path), where).toBe(0o600)
    let now: State
    try {
      now = await validState(store)
    } catch (error) {
      throw new Error(`${where}: the store does not validate: ${(error as Error).message}`)
    }
    if (killed) {
      expect([before, after], `${where}: the store is neither the state before nor the state after`).toContain(now)
      report.killed++
      if (before !== after && now === before) report.killedLeavingBefore++
      if (before !== after && now === after) report.killedLeavingAfter++
    } else {
      expect(now, `${where}: completed, so the store holds its result`).toBe(after)
      if (!m.label.startsWith('check-') && (before !== after || m.label === 'rotate-key')) {
        // A completed write of the store cleans up the temp files earlier crashes left, and
        // settles an interrupted rotation. (Whether it leaves a temp file of its own is the
        // business of the 'leaves no temp file' test below; a login only appends to the journal.)
        const stale = tempsBefore.filter((t) => leftoverTemps(store).includes(t))
        expect(stale, `${where}: temp files of earlier crashes survived a completed write`).toEqual([])
        expect(existsSync(join(dir, 'store.json.key.next')), where).toBe(false)
      }
    }
    state = now
    if (i % 10 === 9) await expectStoreCheckPasses(store, where)
  }
  return report
}

describe('100 writers SIGKILLed at random moments', () => {
  it('leaves, in 100 runs, a store that validates and equals the state before or after the write, and never blocks the next write', async () => {
    const lanes = [newStore(), newStore()]
    await Promise.all(lanes.map(seedCrashStore))
    // Two stores in parallel, 50 writers each, one after the other on each store.
    const reports = await Promise.all(lanes.map((store, i) => crashLane(store, 50, prng(SEED + i + 1), `lane ${i}`)))
    const total = reports.reduce((a, r) => ({
      runs: a.runs + r.runs,
      killed: a.killed + r.killed,
      killedLeavingBefore: a.killedLeavingBefore + r.killedLeavingBefore,
      killedLeavingAfter: a.killedLeavingAfter + r.killedLeavingAfter,
    }))
    expect(total.runs).toBe(100)
    // The kills hit the write itself: most runs died, some before the new store was in place
    // and some after.
    expect(total.killed, JSON.stringify(total)).toBeGreaterThanOrEqual(70)
    expect(total.killedLeavingBefore, JSON.stringify(total)).toBeGreaterThan(0)
    expect(total.killedLeavingAfter, JSON.stringify(total)).toBeGreaterThan(0)

    // After all that, an ordinary write succeeds at once and every secret still works.
    for (const store of lanes) {
      const left = leftoverTemps(store)
      const started = Date.now()
      const r = await store.run(['user:secret:import', 'last', '--secret-stdin', '--json'], {input: newSecret()})
      expect(r.code, r.stderr).toBe(0)
      expect(r.json.users[0]).toMatchObject({user: 'last', changed: true})
      expect(Date.now() - started).toBeLessThan(9500)
      expect(
        left.filter((t) => leftoverTemps(store).includes(t)),
        'temp files of the crashes survived',
      ).toEqual([])
      await expectStoreCheckPasses(store)
      const {Store} = await dist('store/file/store.js')
      const doc = await new Store(store.path).read()
      // (The code of the next step: the current one may have been used by a check above.)
      for (const [user, record] of doc.users as Map<string, any>)
        if (record.secret) expectDecision(await check(store, user, {code: await oathtool(record.secret, {now: '30 seconds'})}), true, 'code_accepted')
    }
  }, 600_000)
})

// The tests below are independent and mostly wait on single processes: they run concurrently.
describe.concurrent('a writer SIGKILLed during its write', () => {
  /** Kills `user:secret:import bob` right after the given operation on the new store's temp file. */
  async function killDuringWrite(store: TempStore, when: (name: string, target: string) => boolean): Promise<WatchedRun> {
    const dir = dirname(store.path)
    // Measure the write once on a copy, to find the operation.
    const probe = newStore()
    cpSync(dir, dirname(probe.path), {recursive: true})
    const measured = await runWatched(['user:secret:import', 'bob', '--secret-stdin', '--store', probe.path], {dir: dirname(probe.path), input: newSecret()})
    expect(measured.code, measured.stderr).toBe(0)
    const op = measured.ops.find((o) => when(o.name, o.target.slice(dirname(probe.path).length + 1)))
    expect(op, JSON.stringify(measured.ops)).toBeDefined()
    const r = await runWatched(['user:secret:import', 'bob', '--secret-stdin', '--store', store.path], {
      dir,
      input: newSecret(),
      crashAt: {op: op!.n, after: true},
    })
    expect(r.signal).toBe('SIGKILL')
    return r
  }

  it('leaves a temp file that does not block the next write, which removes it', async () => {
    const store = newStore()
    await seedCrashStore(store)
    const before = store.bytes()
    await killDuringWrite(store, (name, target) => name === 'fsyncSync' && target.startsWith('store.json.tmp-'))
    expect(leftoverTemps(store).length, 'the killed writer left its temp file').toBeGreaterThan(0)
    expect(store.bytes()).toEqual(before)
    await expectStoreCheckPasses(store)

    // A temp file of garbage from some earlier crash, too.
    writeFileSync(join(dirname(store.path), 'store.json.tmp-99999-deadbeef'), '{"version":1,"users":{"half', {mode: 0o600})
    const r = await store.run(['user:secret:import', 'bob', '--secret-stdin', '--json'], {input: newSecret()})
    expect(r.code, r.stderr).toBe(0)
    expect(leftoverTemps(store)).toEqual([])
    expect(JSON.parse(readFileSync(store.path, 'utf8')).users.bob).toBeDefined()
    await expectStoreCheckPasses(store)
  })

  // A crash between the backup's rename and the store's leaves store.json and store.json.bak as
  // two names of one file; rename(2) between two links of one file does nothing, so the next
  // write must remove its `<temp>.bak` name itself (found by this test; fixed in 524dbd4).
  it('leaves no temp file after a write that completes, even when a crash left .bak linked to the store', async () => {
    const store = newStore()
    await seedCrashStore(store)
    // Killed right after `.bak` was put in place, before the new store was.
    await killDuringWrite(store, (name, target) => name === 'renameSync' && /^store\.json\.tmp-[^ ]*\.bak -> /.test(target))
    expect(statSync(`${store.path}.bak`).ino, 'the crash left .bak as a second name of the store').toBe(statSync(store.path).ino)
    await expectStoreCheckPasses(store)
    const r = await store.run(['twofactor:enable', '--window', '4', '--json'])
    expect(r.code, r.stderr).toBe(0)
    await expectStoreCheckPasses(store)
    expect(leftoverTemps(store)).toEqual([])
  })

  it('leaves a .lock file that does not block the next write (the lock died with its holder)', async () => {
    const store = newStore()
    await seedCrashStore(store)
    // Killed while holding the lock: just before the new store is renamed into place.
    await killDuringWrite(store, (name, target) => name === 'closeSync' && target.startsWith('store.json.tmp-'))
    expect(existsSync(`${store.path}.lock`)).toBe(true)
    const started = Date.now()
    const r = await store.run(['twofactor:enable', '--window', '4', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(Date.now() - started, 'the next write waited for the dead lock').toBeLessThan(9500)
    expect(r.json).toMatchObject({window: 4, changed: true})
  })
})

// --- the lock --------------------------------------------------------------------------------

/**
 * Another tfactl holding `<store>.lock` (test/helpers/hold-lock.mjs: the product's own lock
 * module, so the same kind of lock); resolves once it holds the lock.
 */
async function holdLock(lock: string, seconds: number) {
  const holder = spawn(process.execPath, [join(ROOT, 'test/helpers/hold-lock.mjs'), lock, String(seconds)], {stdio: ['ignore', 'pipe', 'inherit']})
  const exited = new Promise<void>((resolve) => holder.on('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    let out = ''
    holder.stdout!.on('data', (chunk) => {
      out += chunk
      if (out.includes('locked\n')) resolve()
    })
    holder.on('exit', (code) => reject(new Error(`the lock holder exited (${code}) before it held the lock`)))
  })
  return {
    /** SIGKILL the holder: the kernel drops its lock. */
    kill: async () => {
      holder.kill('SIGKILL')
      await exited
    },
  }
}

describe.concurrent('the store lock (<store>.lock)', () => {
  it('makes a write wait about 10 seconds for a live holder, then exit 3 with a clear message and nothing changed', async () => {
    const store = newStore()
    await enable(store)
    await renew(store, 'alice')
    await renew(store, 'alice')
    const files = ['', '.bak'].map((s) => store.path + s).concat(`${store.path}.key`)
    const before = files.map((f) => readFileSync(f))
    const holder = await holdLock(`${store.path}.lock`, 60)
    try {
      // Readers do not need the lock.
      const read = await store.run(['user:list', '--json'])
      expect(read.code, read.stderr).toBe(0)

      // Two writers at once: one speaking JSON, one for people.
      const started = Date.now()
      const timed = async (args: string[]) => {
        const r = await store.run(args, {timeoutMs: 60_000})
        return {...r, elapsed: Date.now() - started}
      }
      const [r, plain] = await Promise.all([timed(['user:secret:renew', 'bob', '--qr', 'none', '--json']), timed(['twofactor:disable'])])
      const message = expectJsonError(r, 3)
      expect(message).toMatch(/lock/i)
      expect(message).toContain(`${store.path}.lock`)
      expect(message).toMatch(/nothing was changed|not changed|unchanged/i)
      expect(plain.code).toBe(3)
      expect(plain.stderr).toMatch(/^tfactl: .*lock/m)
      for (const run of [r, plain]) {
        expect(run.elapsed, 'gave up before 10 s').toBeGreaterThanOrEqual(10_000)
        expect(run.elapsed, 'waited far longer than 10 s').toBeLessThan(25_000)
      }
    } finally {
      await holder.kill()
    }
    expect(files.map((f) => readFileSync(f))).toEqual(before)
    expect(leftoverTemps(store)).toEqual([])
    // Once the holder is gone, the same write goes through.
    expect((await renew(store, 'bob')).user).toBe('bob')
  }, 120_000)

  it('does not block a write when the process holding it was SIGKILLed', async () => {
    const store = newStore()
    await enable(store)
    const holder = await holdLock(`${store.path}.lock`, 60)
    await holder.kill()
    const started = Date.now()
    const r = await store.run(['twofactor:enable', '--window', '2', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({window: 2, changed: true})
    expect(Date.now() - started).toBeLessThan(9500)
  })
})

// --- 3. corruption -----------------------------------------------------------------------------

const seededStore = () => seededCopy(newStore)

/** Bytes of every file in the store's directory except the audit log and the lock. */
function snapshot(store: TempStore): Record<string, string> {
  const dir = dirname(store.path)
  const files: Record<string, string> = {}
  for (const name of readdirSync(dir).sort()) {
    if (name.endsWith('audit.log') || name.endsWith('.lock')) continue
    const st = statSync(join(dir, name))
    files[name] = `${(st.mode & 0o7777).toString(8)} ${st.uid} ${readFileSync(join(dir, name)).toString('base64')}`
  }
  return files
}

describe.concurrent('a store that cannot be parsed or validated', () => {
  // The seeded store holds alice's line, then bob's.
  const otherUser = (valid: string, from: string, to: string) => {
    const at = valid.indexOf('\n"bob":')
    return valid.slice(0, at) + valid.slice(at).replace(from, to)
  }
  const bobSealed = (valid: string) => /"secret":"[^"]*"/.exec(valid.slice(valid.indexOf('\n"bob":')))![0]
  const damage: Array<[string, (valid: string) => string, RegExp]> = [
    ['cut short (truncated JSON)', (valid) => valid.slice(0, Math.floor(valid.length / 2)), /JSON/i],
    ['of the wrong shape (users is a list)', () => '{"version":1,"users":[]}', /users/],
    ['of the wrong shape (alice with 9 digits)', (valid) => valid.replace('"digits":6', '"digits":9'), /digits/],
    ['of the wrong shape (bob with 9 digits)', (valid) => otherUser(valid, '"digits":6', '"digits":9'), /digits/],
    ['with a secret in clear (bob)', (valid) => otherUser(valid, bobSealed(valid), '"secret":"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"'), /encrypt/i],
    ['written by a newer version', (valid) => valid.replace(/"version":\d+/, (m) => `"version":${Number(m.split(':')[1]) + 1}`), /newer|version/i],
  ]
  /** A copy of the seeded store, damaged; returns it with a snapshot of its files. */
  async function damaged(corrupt: (valid: string) => string) {
    const store = await seededStore()
    const valid = readFileSync(store.path, 'utf8')
    const bad = corrupt(valid)
    expect(bad).not.toBe(valid)
    writeStore(store, bad)
    return {store, before: snapshot(store)}
  }

  for (const [label, corrupt, why] of damage) {
    it(`refuses a store ${label} with exit 3, naming the file and its backup, and never overwrites it`, async () => {
      const {store, before} = await damaged(corrupt)
      // A writer (renew seals a new secret, so it would also make a key) and the checker.
      for (const args of [['user:secret:renew', 'carol', '--qr', 'none'], ['store:check']]) {
        const message = expectJsonError(await store.run([...args, '--json']), 3)
        expect(message, args[0]).toContain(store.path)
        expect(message, args[0]).toMatch(why)
        expect(message, `${args[0]}: does not say the backup exists`).toContain(`${store.path}.bak`)
        expect(snapshot(store), `${args[0]} changed the files`).toEqual(before)
      }
      // The backup is the previous valid store: putting it back works.
      cpSync(`${store.path}.bak`, store.path)
      await expectStoreCheckPasses(store)
      expect((await store.run(['user:list', '--json'])).json.users.map((u: any) => u.user)).toEqual(['alice'])
    })

    // login:check takes a hot path (Store.login in src/store/file/store.ts): it validates the store's
    // head and the one user's line only (docs/files.md, "A login … reads the header and that user's
    // line only"), so it gets its own tests.
    if (label.includes('(bob')) {
      // Damage outside alice's line is not seen by alice's login (by design, see above); the
      // store itself is still never rewritten.
      it(`login:check of another user never rewrites a store ${label}`, async () => {
        const {store, before} = await damaged(corrupt)
        const r = await store.run(['login:check', 'alice', '--code', '123456', '--json'])
        expect([1, 3], r.stdout).toContain(r.code)
        const {'store.json.journal': _journal, ...rest} = snapshot(store)
        const {'store.json.journal': _before, ...restBefore} = before
        expect(Object.keys(rest)).toContain('store.json')
        expect(rest).toEqual(restBefore)
        expectJsonError(await store.run(['store:check', '--json']), 3)
      })
      continue
    }
    it(`login:check refuses a store ${label} with exit 3, naming the file, and writes nothing`, async () => {
      const {store, before} = await damaged(corrupt)
      const message = expectJsonError(await store.run(['login:check', 'alice', '--code', '123456', '--json']), 3)
      expect(message).toContain(store.path)
      expect(message).toMatch(why)
      expect(snapshot(store), 'login:check changed the files').toEqual(before)
    })

    it(`login:check on a store ${label} says that the backup exists`, async () => {
      const {store} = await damaged(corrupt)
      const message = expectJsonError(await store.run(['login:check', 'alice', '--code', '123456', '--json']), 3)
      expect(message).toContain(`${store.path}.bak`)
    })
  }

  it('does not mention a backup when there is none', async () => {
    const store = newStore()
    writeStore(store, '{"version":1,"users":')
    const message = expectJsonError(await store.run(['twofactor:enable', '--json']), 3)
    expect(message).toContain(store.path)
    expect(message).not.toContain('.bak')
    expect(store.bytes()?.toString()).toBe('{"version":1,"users":')
  })
})

describe.concurrent('the backup (<store>.bak)', () => {
  it('holds the previous store after every write, private (0600)', async () => {
    const store = newStore()
    await enable(store)
    for (const args of [
      ['user:secret:renew', 'alice', '--qr', 'none'],
      ['twofactor:enable', '--window', '3'],
      ['user:secret:unset', 'alice', '--yes'],
    ]) {
      const previous = store.bytes()
      const r = await store.run([...args, '--json'])
      expect(r.code, r.stderr).toBe(0)
      expect(readFileSync(`${store.path}.bak`), args[0]).toEqual(previous)
      expect(mode(`${store.path}.bak`)).toBe(0o600)
      expect(store.bytes()).not.toEqual(previous)
    }
  })
})

describe.concurrent('schema versions', () => {
  it('reads a minimal version-1 store and writes it back complete, with its version', async () => {
    const store = newStore()
    writeStore(store, '{"version":1}')
    await enable(store, '--window', '2')
    const written = JSON.parse(readFileSync(store.path, 'utf8'))
    expect(written.version).toBe(1)
    expect(written.settings).toMatchObject({enabled: true, window: 2})
    await expectStoreCheckPasses(store)
  })

  it('refuses a store without a version field (exit 3), leaving it as it is', async () => {
    const store = newStore()
    writeStore(store, '{"settings":{},"users":{}}')
    expect(expectJsonError(await store.run(['twofactor:enable', '--json']), 3)).toMatch(/version/)
    expect(store.bytes()?.toString()).toBe('{"settings":{},"users":{}}')
  })
})
