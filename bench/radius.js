#!/usr/bin/env node
// RADIUS responder throughput (`npm run bench` runs it last; `node bench/radius.js` alone).
// One `tfactl radius:serve` (code mode), 2 000 enrolled users, a load generator here sending real
// Access-Requests over UDP with 64 in flight. Each user logs in with the codes of three steps in
// order (previous, current, next), so every accepted login is a fresh code; one code in
// ten is also sent a second time at once, and exactly one of the two may be accepted. Runs
// against PostgreSQL on this host (a throwaway server; needs root and PostgreSQL 15) and the
// file store. Goal (issue 13): ≥ 1 000 accepted logins/s through one responder with PostgreSQL.
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {createSocket} from 'node:dgram'
import {chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {base32Decode} from '../dist/core/base32.js'
import {hotp} from '../dist/core/totp.js'
import {ATTR, checkResponse, CODE, encodeRequest, hidePassword, text} from '../dist/radius/packet.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const BIN = join(ROOT, 'bin', 'run.js')
const PG_BIN = process.env.TFACTL_PG_BIN ?? '/usr/lib/postgresql/15/bin'
const USERS = Number(process.env.BENCH_RADIUS_USERS ?? 2000)
const IN_FLIGHT = Number(process.env.BENCH_RADIUS_IN_FLIGHT ?? 64)
const SECRET = Buffer.from(randomBytes(12).toString('hex'))
const env = {...process.env, NO_COLOR: '1'}
delete env.TFACTL_STORE

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const freePort = () =>
  new Promise((done) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address()
      s.close(() => done(port))
    })
  })

function tfactl(args) {
  const r = spawnSync(process.execPath, [BIN, ...args], {env, maxBuffer: 256 << 20})
  if (r.status !== 0) throw new Error(`tfactl ${args[0]} failed (exit ${r.status}): ${r.stderr}`)
  return r.stdout.toString()
}

/** A throwaway PostgreSQL on a free port (initdb as `postgres`), or a string saying why not. */
async function startPostgres(work) {
  if (process.getuid?.() !== 0) return 'not root (the server runs as the postgres user)'
  if (!existsSync(join(PG_BIN, 'initdb'))) return `no ${PG_BIN}/initdb`
  const dir = join(work, 'pg')
  mkdirSync(dir)
  const uid = Number(execFileSync('id', ['-u', 'postgres'], {encoding: 'utf8'}))
  const gid = Number(execFileSync('id', ['-g', 'postgres'], {encoding: 'utf8'}))
  chownSync(dir, uid, gid)
  chmodSync(work, 0o755)
  const port = await freePort()
  const as = (cmd, args) => execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], {stdio: 'pipe', cwd: '/'})
  as(join(PG_BIN, 'initdb'), ['-A', 'trust', '-U', 'postgres', '-D', join(dir, 'data'), '--no-sync', '-E', 'UTF8', '--locale', 'C'])
  // the server's defaults (fsync on): what a host would run
  as(join(PG_BIN, 'pg_ctl'), [
    '-D',
    join(dir, 'data'),
    '-l',
    join(dir, 'log'),
    '-o',
    `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1 ${process.env.BENCH_PG_OPTS ?? ''}`,
    '-w',
    'start',
  ])
  as(join(PG_BIN, 'createdb'), ['-h', dir, '-p', String(port), '-U', 'postgres', 'tfactl'])
  return {url: `postgresql://postgres@127.0.0.1:${port}/tfactl`, stop: () => as(join(PG_BIN, 'pg_ctl'), ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop'])}
}

function startResponder(storeArgs, clients, extra = []) {
  return new Promise((done, fail) => {
    const child = spawn(
      process.execPath,
      [
        ...(process.env.BENCH_RADIUS_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_RADIUS_PROF] : []),
        BIN,
        'radius:serve',
        '--listen',
        '127.0.0.1:0',
        '--clients',
        clients,
        ...storeArgs,
        ...extra,
      ],
      {env, stdio: ['ignore', 'ignore', 'pipe']},
    )
    let log = ''
    child.stderr.setEncoding('utf8').on('data', (d) => {
      log += d
      const m = /answering on [^\s]+:(\d+)/.exec(log)
      if (m) done({port: Number(m[1]), child, logs: () => log})
    })
    child.once('exit', (code) => fail(new Error(`radius:serve exited ${code}: ${log}`)))
  })
}

/**
 * The load: `jobs` is a list of per-user queues of codes; up to IN_FLIGHT requests are out at
 * once, a user's next code only after the previous answer. Returns counts and the wall time.
 */
async function load(port, queues) {
  const socket = createSocket('udp4')
  await new Promise((r) => socket.bind(0, '127.0.0.1', r))
  const waiting = new Map() // id → {authenticator, resolve}
  const freeIds = Array.from({length: 256}, (_, i) => i)
  socket.on('message', (msg) => {
    const w = waiting.get(msg[1])
    if (!w) return
    waiting.delete(msg[1])
    clearTimeout(w.timer)
    freeIds.push(msg[1])
    try {
      w.resolve(checkResponse(msg, w.authenticator, SECRET).code)
    } catch {
      w.resolve('bad')
    }
  })
  const ask = (user, code) =>
    new Promise((resolve) => {
      const id = freeIds.shift()
      const authenticator = randomBytes(16)
      const attributes = [
        {type: ATTR.userName, value: text(user)},
        {type: ATTR.userPassword, value: hidePassword(code, SECRET, authenticator)},
      ]
      const timer = setTimeout(() => {
        waiting.delete(id)
        freeIds.push(id)
        resolve('timeout')
      }, 10_000)
      waiting.set(id, {authenticator, resolve, timer})
      socket.send(encodeRequest({id, authenticator, attributes, secret: SECRET}), port, '127.0.0.1')
    })
  const counts = {accepted: 0, rejected: 0, timeout: 0, bad: 0, duplicatePairs: 0, duplicateBothAccepted: 0, duplicateNoneAccepted: 0}
  const tally = (code) => {
    if (code === CODE.accessAccept) counts.accepted++
    else if (code === CODE.accessReject) counts.rejected++
    else if (code === 'timeout') counts.timeout++
    else counts.bad++
  }
  let next = 0
  const started = process.hrtime.bigint()
  // Each worker runs users one at a time; a duplicated code counts as two of the 64 in flight.
  const worker = async () => {
    while (next < queues.length) {
      const {user, codes} = queues[next++]
      for (const [i, code] of codes.entries()) {
        if (i === 1 && user.endsWith('0')) {
          const pair = await Promise.all([ask(user, code), ask(user, code)])
          pair.forEach(tally)
          counts.duplicatePairs++
          const accepts = pair.filter((c) => c === CODE.accessAccept).length
          if (accepts === 2) counts.duplicateBothAccepted++
          if (accepts === 0) counts.duplicateNoneAccepted++
        } else tally(await ask(user, code))
      }
    }
  }
  await Promise.all(Array.from({length: IN_FLIGHT}, worker))
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  socket.close()
  return {...counts, seconds}
}

/** Waits for the start of a 30 s step, so that the whole run stays inside it (and its window). */
async function stepStart() {
  const into = (Date.now() / 1000) % 30
  if (into > 2) await sleep((30 - into + 0.2) * 1000)
  return Math.floor(Date.now() / 30_000)
}

async function scenario(name, storeArgs, work, responderArgs = []) {
  const list = join(work, `${name}-users.txt`)
  const users = Array.from({length: USERS}, (_, i) => `r${String(i).padStart(5, '0')}`)
  writeFileSync(list, users.join('\n'))
  // window 3: the codes of the previous, current and next step stay good for two more steps, so a
  // slow run (the file store) may cross a step boundary without codes leaving the window
  tfactl(['twofactor:enable', '--ssh', '--fail-delay', '0', '--window', '3', '--max-failures', '0', ...storeArgs])
  const secrets = JSON.parse(tfactl(['user:secret:renew', '--users-file', list, '--qr', 'none', '--json', ...storeArgs])).users
  const clients = join(work, `${name}-clients`)
  writeFileSync(clients, `127.0.0.1 ${SECRET} code\n`, {mode: 0o600})
  const responder = await startResponder(storeArgs, clients, responderArgs)
  try {
    const step = await stepStart()
    const queues = secrets.map((s) => {
      const key = base32Decode(s.secret)
      return {user: s.user, codes: [step - 1, step, step + 1].map((n) => hotp(key, n, 6))}
    })
    const r = await load(responder.port, queues)
    const crossed = Math.floor(Date.now() / 30_000) > step + 1
    const expected = USERS * 3
    const rate = r.accepted / r.seconds
    const exact = r.accepted === expected && r.duplicateBothAccepted === 0 && r.duplicateNoneAccepted === 0 && r.timeout === 0 && r.bad === 0
    console.log(
      `radius:serve, ${name}: ${r.accepted} accepted (${expected} codes), ${r.rejected} rejected, ${r.timeout} timeouts in ${r.seconds.toFixed(2)} s → ` +
        `${rate.toFixed(0)} accepted logins/s; ${r.duplicatePairs} codes sent twice at once: ${r.duplicateBothAccepted} accepted twice, ${r.duplicateNoneAccepted} never` +
        `${exact ? '; exactly one Accept per code' : '; NOT exactly one Accept per code'}${crossed ? ' (the run took more than two 30 s steps: some codes left the window)' : ''}`,
    )
    return {name, rate, exact}
  } finally {
    if (process.env.BENCH_RADIUS_CPU) {
      const f = (await import('node:fs')).readFileSync(`/proc/${responder.child.pid}/stat`, 'utf8').split(') ')[1].split(' ')
      console.log(`  responder CPU: ${((Number(f[11]) + Number(f[12])) / 100).toFixed(1)} s`)
    }
    responder.child.kill('SIGTERM')
    await new Promise((r) => responder.child.once('exit', r))
  }
}

export async function radiusBench() {
  const work = mkdtempSync(join(tmpdir(), 'tfactl-bench-radius-'))
  console.log(`\nRADIUS: one responder, ${USERS} users, ${IN_FLIGHT} requests in flight (goal with PostgreSQL: ≥ 1 000 accepted logins/s)`)
  try {
    const only = process.env.BENCH_ONLY // postgres | file, as in bench/run.js
    const pg = only === 'file' ? 'BENCH_ONLY=file' : await startPostgres(work).catch((error) => `PostgreSQL did not start: ${error.message}`)
    if (typeof pg === 'string') console.log(`radius:serve, PostgreSQL: skipped (${pg})`)
    else
      try {
        await scenario('PostgreSQL', ['--store', pg.url, '--key-file', join(work, 'pg-key', 'tfactl.key')], work)
      } finally {
        pg.stop()
      }
    if (only !== 'postgres' && !process.env.BENCH_RADIUS_PG_ONLY) await scenario('file store', ['--store', join(work, 'file', 'store.json')], work)
    // BENCH_RADIUS_METRICS=1: the same file-store run again with --metrics, side by side (what the metrics cost)
    if (only !== 'postgres' && process.env.BENCH_RADIUS_METRICS)
      await scenario('file store, --metrics', ['--store', join(work, 'file-metrics', 'store.json')], work, ['--metrics', '127.0.0.1:0'])
  } finally {
    rmSync(work, {recursive: true, force: true})
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await radiusBench()
