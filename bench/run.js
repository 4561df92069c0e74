#!/usr/bin/env node
// Benchmarks (`npm run bench`): each case runs several times after a warm-up, side by side with
// `node -e 0` in the same run, and prints the median wall time, the ratio to `node -e 0`, and
// the peak RSS. Never part of `npm test`: timings depend on the machine.
import {execFileSync, spawnSync} from 'node:child_process'
import {chmodSync, chownSync, copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {cpus, tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {hotp, timeStep} from '../dist/core/totp.js'
import {base32Decode} from '../dist/core/base32.js'
import {radiusBench} from './radius.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const BIN = join(ROOT, 'bin', 'run.js')
const RSS_PROBE = join(ROOT, 'bench', 'rss-probe.cjs')
const RUNS = Number(process.env.BENCH_RUNS ?? 15)
// BENCH_ONLY=postgres runs only the PostgreSQL cases; BENCH_ONLY=file skips them
const ONLY = process.env.BENCH_ONLY
const PG_BIN = process.env.TFACTL_PG_BIN ?? '/usr/lib/postgresql/15/bin'
const WARMUP = 2
// BENCH_CASES=regex picks cases by name (the PostgreSQL ones too)
const SELECT = process.env.BENCH_CASES ? new RegExp(process.env.BENCH_CASES) : undefined
const work = mkdtempSync(join(tmpdir(), 'tfactl-bench-'))
const env = {...process.env, NO_COLOR: '1'}
delete env.TFACTL_STORE

function run(args, {input, extraEnv, cmd = process.execPath} = {}) {
  const started = process.hrtime.bigint()
  const r = spawnSync(cmd, args, {input, env: {...env, ...extraEnv}, maxBuffer: 256 << 20})
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  return {ms, status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString()}
}

const tfactl = (args, opts) => run([BIN, ...args], opts)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Peak RSS (MB) of one run, measured in a separate run with a preloaded probe. */
function peakRss(args, prepare) {
  const out = join(work, `rss-${Math.random().toString(36).slice(2)}`)
  const a = prepare ? prepare() : args
  run(['--require', RSS_PROBE, ...a], {extraEnv: {TFACTL_BENCH_RSS_FILE: out}})
  try {
    return Number(readFileSync(out, 'utf8')) / 1024
  } catch {
    return NaN
  }
}

function must(r, what) {
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}): ${r.stderr.trim()}`)
  return r
}

/**
 * Runs `argsFor(i)` RUNS times after WARMUP; `check` validates each run's outcome. Each run is
 * paired with a run of `node -e 0` just before it: the case's ratio is against those (`base`), so
 * that on a busy machine the two see the same load.
 */
function bench(name, argsFor, {check = (r) => must(r, name), setup, cmd} = {}) {
  const times = []
  const base = []
  for (let i = 0; i < WARMUP + RUNS; i++) {
    setup?.(i)
    const b = run(['-e', '0'])
    const r = run(argsFor(i), {cmd})
    check(r)
    if (i >= WARMUP) {
      times.push(r.ms)
      base.push(b.ms)
    }
  }
  setup?.(WARMUP + RUNS)
  // (no probe can be preloaded into the standalone executable)
  return {name, median: median(times), base: median(base), rss: cmd ? NaN : peakRss(argsFor(WARMUP + RUNS))}
}

/** Like bench() for several cases at once, taking one run of each in turn. */
function benchSideBySide(cases) {
  const times = cases.map(() => [])
  for (let i = 0; i < WARMUP + RUNS; i++)
    cases.forEach((c, k) => {
      const r = run(c.argsFor(i), {cmd: c.cmd})
      must(r, c.name)
      if (i >= WARMUP) times[k].push(r.ms)
    })
  // (the RSS probe is preloaded by this node; none can be into the standalone executable)
  return cases.map((c, k) => ({name: c.name, median: median(times[k]), rss: c.standalone ? NaN : peakRss(c.argsFor(WARMUP + RUNS))}))
}

/**
 * The standalone executable of the Debian package (`npm run package`), unpacked from
 * build/tfactl_<version>_amd64.deb as root (its lock addon must be root's), and a copy of this
 * node for the npm CLI beside it; undefined when the package was not built or we are not root.
 *
 * Both executables are fresh copies made the same way, so that the kernel holds both alike. How
 * a file came into the page cache changes every start of it: a copy that tar (dpkg-deb -x) wrote
 * in 10 KB pieces started 2–5 ms slower here than the same bytes copied in one piece, and a
 * node binary resident for hours was faster than either; the npm CLI on the long-resident node
 * against a just-unpacked standalone measured that, not the two CLIs (docs/package.md, Speed).
 */
function standalone() {
  const {version} = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  const deb = join(ROOT, 'build', `tfactl_${version}_amd64.deb`)
  if (process.getuid?.() !== 0 || !existsSync(deb)) return undefined
  const dir = mkdtempSync(join(work, 'deb-'))
  execFileSync('dpkg-deb', ['-x', deb, dir])
  const exe = join(dir, 'usr', 'bin', 'tfactl')
  const unpacked = `${exe}.unpacked`
  renameSync(exe, unpacked)
  const node = join(dir, 'node')
  for (const [from, to] of [
    [unpacked, exe],
    [process.execPath, node],
  ]) {
    copyFileSync(from, to)
    chmodSync(to, 0o755)
  }
  rmSync(unpacked)
  return {exe, node, size: statSync(exe).size, debSize: statSync(deb).size}
}

/** The current code of a base32 secret, as an app shows it. */
const codeFor = (secret) => hotp(base32Decode(secret), timeStep(Date.now(), 30), 6, 'SHA1')

/**
 * A throwaway PostgreSQL server on a free loopback port (initdb as `postgres`, as the tests do),
 * or undefined when PostgreSQL is not installed or we are not root.
 */
async function startPostgres() {
  if (process.getuid?.() !== 0) return undefined
  try {
    execFileSync(join(PG_BIN, 'pg_ctl'), ['--version'])
  } catch {
    return undefined
  }
  const port = await new Promise((done) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => done(p))
    })
  })
  const dir = mkdtempSync(join(tmpdir(), 'tfactl-bench-pg-'))
  const ids = (flag) => Number(execFileSync('id', [flag, 'postgres'], {encoding: 'utf8'}))
  chownSync(dir, ids('-u'), ids('-g'))
  const asPg = (tool, args) => execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, tool), ...args], {stdio: 'ignore', cwd: '/'})
  asPg('initdb', ['-A', 'trust', '-U', 'postgres', '-D', join(dir, 'data'), '--no-sync'])
  asPg('pg_ctl', ['-D', join(dir, 'data'), '-l', join(dir, 'log'), '-o', `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1`, '-w', 'start'])
  let n = 0
  return {
    database() {
      const name = `bench${++n}`
      asPg('createdb', ['-h', dir, '-p', String(port), '-U', 'postgres', name])
      return `postgresql://postgres@127.0.0.1:${port}/${name}`
    },
    /** What autovacuum does within a minute of a bulk load on any server: the bench measures that state, not the minute after the load. */
    vacuum(url) {
      asPg('vacuumdb', ['-h', dir, '-p', String(port), '-U', 'postgres', '--analyze', '--quiet', new URL(url).pathname.slice(1)])
    },
    dropAll() {
      for (let i = 1; i <= n; i++) asPg('dropdb', ['-h', dir, '-p', String(port), '-U', 'postgres', '--if-exists', `bench${i}`])
      n = 0
    },
    stop() {
      try {
        asPg('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop'])
      } finally {
        rmSync(dir, {recursive: true, force: true})
      }
    },
  }
}

function enrolStore(dir, users) {
  const store = join(dir, 'store.json')
  const list = join(dir, 'users.txt')
  writeFileSync(list, users.join('\n'))
  must(tfactl(['twofactor:enable', '--fail-delay', '0', '--window', '1', '--store', store]), 'enable')
  const r = must(tfactl(['user:secret:renew', '--users-file', list, '--qr', 'none', '--json', '--store', store]), 'enrol')
  const secrets = new Map(JSON.parse(r.stdout).users.map((u) => [u.user, u.secret]))
  return {store, secrets}
}

console.log(`tfactl benchmarks — ${new Date().toISOString()} — ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`)
console.log(`${RUNS} runs per case after ${WARMUP} warm-up runs; medians\n`)

const pg = ONLY === 'file' ? undefined : await startPostgres()
try {
  const baseline = bench('node -e 0', () => ['-e', '0'])
  const results = ONLY === 'postgres' ? [] : fileCases()
  if (pg) results.push(...pgCases())
  else console.log(`(PostgreSQL cases skipped: needs root and PostgreSQL in ${PG_BIN})\n`)
  const rows = [baseline, ...results]
  const pad = (s, n) => String(s).padEnd(n)
  // the ratio is to the `node -e 0` runs made alongside the case's own (see bench())
  console.log(`${pad('case', 44)} ${pad('median', 10)} ${pad('ratio', 7)} ${pad('peak RSS', 9)} node -e 0 alongside`)
  for (const r of rows)
    console.log(
      `${pad(r.name, 44)} ${pad(`${r.median.toFixed(0)} ms`, 10)} ${pad(`${(r.median / (r.base ?? baseline.median)).toFixed(2)}×`, 7)} ${pad(Number.isNaN(r.rss) ? '–' : `${r.rss.toFixed(0)} MB`, 9)} ${(r.base ?? baseline.median).toFixed(0)} ms`,
    )
} finally {
  pg?.stop()
  rmSync(work, {recursive: true, force: true})
}

/** The PostgreSQL store (same host, TCP on loopback): the login fast path, bulk enrolment, and a 100 000-user database. */
function pgCases() {
  const url = pg.database()
  const keyFile = join(work, 'pg-key', 'tfactl.key')
  const extraEnv = {TFACTL_STORE: url, TFACTL_KEY_FILE: keyFile}
  const list = join(work, 'pg-users.txt')
  const users = Array.from({length: WARMUP + RUNS + 1}, (_, i) => `pguser${i}`)
  writeFileSync(list, users.join('\n'))
  must(run([BIN, 'twofactor:enable', '--fail-delay', '0'], {extraEnv}), 'pg enable')
  const r = must(run([BIN, 'user:secret:renew', '--users-file', list, '--qr', 'none', '--json'], {extraEnv}), 'pg enrol')
  const secrets = new Map(JSON.parse(r.stdout).users.map((u) => [u.user, u.secret]))
  const withDb = (args) => [...args, '--store', url, '--key-file', keyFile]
  const bulkList = join(work, 'pg-bulk.txt')
  writeFileSync(bulkList, Array.from({length: 10_000}, (_, i) => `bulk${i}`).join('\n'))
  let bulkUrl
  const cases = [
    [
      'login:check, PostgreSQL (valid code)',
      () => bench('login:check, PostgreSQL (valid code)', (i) => withDb([BIN, 'login:check', users[i], '--code', codeFor(secrets.get(users[i]))])),
    ],
    [
      'bulk enrolment, 10 000 users, PostgreSQL',
      () =>
        bench(
          'bulk enrolment, 10 000 users, PostgreSQL',
          () => [
            BIN,
            'user:secret:renew',
            '--users-file',
            bulkList,
            '--qr',
            'none',
            '--json',
            '--store',
            bulkUrl,
            '--key-file',
            join(work, 'pg-bulk-key', 'tfactl.key'),
          ],
          {
            setup: () => {
              rmSync(join(work, 'pg-bulk-key'), {recursive: true, force: true})
              bulkUrl = pg.database()
            },
          },
        ),
    ],
  ]
  // the 100 000-user database is enrolled only when one of its cases is picked
  let big
  const bigDb = () => {
    if (big) return big
    const bigUrl = pg.database()
    const bigKey = join(work, 'pg-big-key', 'tfactl.key')
    const bigEnv = {TFACTL_STORE: bigUrl, TFACTL_KEY_FILE: bigKey}
    const bigList = join(work, 'pg-big-users.txt')
    writeFileSync(bigList, bigNames().join('\n'))
    must(run([BIN, 'twofactor:enable', '--fail-delay', '0'], {extraEnv: bigEnv}), 'pg 100k enable')
    const e = must(run([BIN, 'user:secret:renew', '--users-file', bigList, '--qr', 'none', '--json'], {extraEnv: bigEnv}), 'pg 100k enrol')
    pg.vacuum(bigUrl)
    big = {secrets: new Map(JSON.parse(e.stdout).users.map((u) => [u.user, u.secret])), store: (args) => [...args, '--store', bigUrl, '--key-file', bigKey]}
    return big
  }
  cases.push(...hundredK('100k PostgreSQL', bigDb))
  const picked = cases.filter(([name]) => !SELECT || SELECT.test(name)).map(([, run]) => run())
  pg.dropAll()
  return picked
}

function bigNames() {
  return Array.from({length: 100_000}, (_, i) => `u${String(i).padStart(6, '0')}`)
}

/** 21 users of the 100 000, a different set per `offset`: each run of a case acts on a fresh one. */
function spread(offset) {
  return bigNames().filter((_, i) => i % 4999 === offset)
}

/**
 * The one-user commands, twofactor:status and user:list on a 100 000-user store (`open()` gives
 * its secrets and the flags that name it), each named `${label}: …`.
 */
function hundredK(label, open) {
  const one = (what, offset, argsOf, opts) => {
    const name = `${label}: ${what}`
    return [
      name,
      () => {
        const {store} = open()
        const users = spread(offset)
        return bench(name, (i) => store([BIN, ...argsOf(users[i % users.length]), '--json']), opts?.(users))
      },
    ]
  }
  const pending = new Map()
  return [
    one('renew one user', 3, (u) => ['user:secret:renew', u, '--qr', 'none']),
    one('user:secret:unset', 4, (u) => ['user:secret:unset', u, '--yes']),
    one('user:unlock', 5, (u) => ['user:unlock', u]),
    one('user:bypass', 6, (u) => ['user:bypass', u]),
    one('user:recovery:generate', 7, (u) => ['user:recovery:generate', u]),
    one(
      'user:secret:confirm',
      8,
      (u) => ['user:secret:confirm', u, '--code', codeFor(pending.get(u))],
      (users) => ({
        // each run confirms a pending secret made just before it (not timed)
        setup: (i) => {
          const user = users[i % users.length]
          const r = must(run(open().store([BIN, 'user:secret:renew', user, '--pending', '--qr', 'none', '--json'])), 'renew --pending')
          pending.set(user, JSON.parse(r.stdout).users[0].secret)
        },
      }),
    ),
    [`${label}: twofactor:status`, () => bench(`${label}: twofactor:status`, () => open().store([BIN, 'twofactor:status', '--json']))],
    [`${label}: user:list --json`, () => bench(`${label}: user:list --json`, () => open().store([BIN, 'user:list', '--json']))],
  ]
}

function fileCases() {
  const small = enrolStore(
    mkdtempSync(join(work, 'small-')),
    Array.from({length: WARMUP + RUNS + 1}, (_, i) => `user${i}`),
  )
  // The 100 000-user stores are made only when a case that uses them runs (BENCH_CASES).
  let bigStores
  const large = () => {
    if (bigStores) return bigStores
    const big = enrolStore(
      mkdtempSync(join(work, 'big-')),
      Array.from({length: 100_000}, (_, i) => `u${String(i).padStart(6, '0')}`),
    )
    const bigUsers = [...big.secrets.keys()].filter((_, i) => i % 4999 === 0)
    // The same 100 000 users with SSH 2FA on: a copy of the store whose users file lists them all.
    const sshDir = mkdtempSync(join(work, 'big-ssh-'))
    cpSync(dirname(big.store), sshDir, {recursive: true})
    const ssh = {store: join(sshDir, 'store.json'), secrets: big.secrets, oath: join(sshDir, 'users.oath')}
    must(tfactl(['twofactor:enable', '--ssh', '--oath-file', ssh.oath, '--store', ssh.store]), 'enable --ssh')
    const sshUsers = [...big.secrets.keys()].filter((_, i) => i % 4999 === 17)
    const renewUsers = (offset) => [...big.secrets.keys()].filter((_, i) => i % 4999 === offset)
    bigStores = {big, bigUsers, ssh, sshUsers, renewUsers}
    return bigStores
  }

  const bulkDir = mkdtempSync(join(work, 'bulk-'))
  const bulkList = join(bulkDir, 'users.txt')
  writeFileSync(bulkList, Array.from({length: 10_000}, (_, i) => `bulk${i}`).join('\n'))
  const freshBulk = () => rmSync(join(bulkDir, 'state'), {recursive: true, force: true})
  const replayOk = (what) => (r) => {
    if (r.status !== 0 && !r.stdout.includes('code_replayed')) must(r, what)
  }

  const cases = [
    [
      'login:check (valid code)',
      () =>
        bench('login:check (valid code)', (i) => {
          const user = `user${i}`
          return [BIN, 'login:check', user, '--code', codeFor(small.secrets.get(user)), '--store', small.store]
        }),
    ],
    ['--help', () => bench('--help', () => [BIN, '--help'])],
    // The Debian package's standalone executable beside the npm CLI, their runs interleaved
    // (one of each in turn) so that both see the same load on a busy machine, each started from
    // a fresh copy of its executable made the same way (see standalone()).
    [
      'standalone: login:check (valid code) and --help, beside the npm CLI',
      () => {
        const users = Array.from({length: WARMUP + RUNS + 1}, (_, i) => `user${i}`)
        const stores = {npm: enrolStore(mkdtempSync(join(work, 'side-npm-')), users), sea: enrolStore(mkdtempSync(join(work, 'side-sea-')), users)}
        const login = (store) => (i) => ['login:check', `user${i}`, '--code', codeFor(store.secrets.get(`user${i}`)), '--store', store.store]
        return benchSideBySide([
          {name: 'npm CLI: login:check (valid code)', argsFor: (i) => [BIN, ...login(stores.npm)(i)], cmd: sea().node},
          {name: 'standalone: login:check (valid code)', argsFor: login(stores.sea), cmd: sea().exe, standalone: true},
          {name: 'npm CLI: --help', argsFor: () => [BIN, '--help'], cmd: sea().node},
          {name: 'standalone: --help', argsFor: () => ['--help'], cmd: sea().exe, standalone: true},
        ])
      },
    ],
    [
      'user:secret:renew --json (one user)',
      () => bench('user:secret:renew --json (one user)', (i) => [BIN, 'user:secret:renew', `new${i}`, '--json', '--store', small.store]),
    ],
    [
      'login:check, 100 000-user store',
      () =>
        bench(
          'login:check, 100 000-user store',
          (i) => {
            const user = large().bigUsers[i % large().bigUsers.length]
            // each user's code once: a second use would be a replay
            return [BIN, 'login:check', user, '--code', codeFor(large().big.secrets.get(user)), '--store', large().big.store, '--json']
          },
          {check: replayOk('login:check 100k')},
        ),
    ],
    [
      '100k: login:check, no-secret user',
      () => bench('100k: login:check, no-secret user', () => [BIN, 'login:check', 'nobody', '--store', large().big.store, '--json']),
    ],
    ...hundredK('100k', () => ({store: (args) => [...args, '--store', large().big.store]})),
    [
      '100k SSH 2FA: login:check (valid code)',
      () =>
        bench(
          '100k SSH 2FA: login:check (valid code)',
          (i) => {
            const user = large().sshUsers[i % large().sshUsers.length]
            return [BIN, 'login:check', user, '--service', 'ssh', '--code', codeFor(large().ssh.secrets.get(user)), '--store', large().ssh.store, '--json']
          },
          {check: replayOk('login:check 100k ssh')},
        ),
    ],
    [
      '100k SSH 2FA: login:check, no-secret user',
      () =>
        bench('100k SSH 2FA: login:check, no-secret user', () => [BIN, 'login:check', 'nobody', '--service', 'ssh', '--store', large().ssh.store, '--json']),
    ],
    [
      '100k SSH 2FA: renew one user',
      () =>
        bench('100k SSH 2FA: renew one user', (i) => [
          BIN,
          'user:secret:renew',
          large().renewUsers(2)[i % 21],
          '--qr',
          'none',
          '--json',
          '--store',
          large().ssh.store,
        ]),
    ],
    ['100k SSH 2FA: twofactor:status', () => bench('100k SSH 2FA: twofactor:status', () => [BIN, 'twofactor:status', '--json', '--store', large().ssh.store])],
    // last: its large writes would otherwise still be flushing while the next case fsyncs
    [
      'bulk enrolment, 10 000 users',
      () =>
        bench(
          'bulk enrolment, 10 000 users',
          () => [BIN, 'user:secret:renew', '--users-file', bulkList, '--qr', 'none', '--json', '--store', join(bulkDir, 'state', 'store.json')],
          {setup: freshBulk},
        ),
    ],
  ]
  let unpacked
  const sea = () => {
    unpacked ??= standalone()
    if (!unpacked) throw new Error('no standalone executable: run `npm run package` first (as root), or leave out the standalone cases (BENCH_CASES)')
    return unpacked
  }
  // BENCH_CASES=regex picks cases by name
  const picked = cases.filter(([name]) => !SELECT || SELECT.test(name)).flatMap(([, run]) => run())
  if (unpacked)
    console.log(
      `standalone executable: ${(unpacked.size / 1e6).toFixed(1)} MB (/usr/bin/tfactl), its package ${(unpacked.debSize / 1e6).toFixed(1)} MB (.deb)\n`,
    )
  return picked
}
// The RADIUS responder: throughput, not one process's wall time (bench/radius.js).
if (!process.env.BENCH_SKIP_RADIUS) await radiusBench()
