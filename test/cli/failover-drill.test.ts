// The failover drill (docs/ha.md): a primary and a streaming standby on this machine, two
// `radius:serve` responders and a stream of CLI commands, all given the two-host URL, under a
// steady load of logins (~200/s: fresh codes of distinct users, replays of codes already
// accepted, wrong codes). Then the primary is killed (SIGKILL to every server process) and, after
// a gap, the standby is promoted. Counted from the clients' side:
//   - no code accepted twice, across the failover;
//   - nothing acknowledged before the kill is lost (accepted codes, enrolments, failure counts,
//     lockouts), read back from the new primary;
//   - between the kill and the promotion only Rejects (or no answer);
//   - Accepts again within 10 s of the promotion, the responders never restarted.
// With synchronous replication all of it is asserted; with asynchronous replication the same
// drill measures what was lost (printed, and written down in docs/ha.md).
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterEach, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import type {Doc} from '../../src/core/model.js'
import {hotp} from '../../src/core/totp.js'
import {PgStore} from '../../src/store/postgres/store.js'
import {type Run, tfactl} from '../helpers/cli.js'
import {type PgPair, startPair} from '../helpers/postgres.js'
import {radiusClient, type Responder, startResponder, writeClients} from '../helpers/radius.js'

const RATE = 200 // requests a second, over both responders
const MAX_IN_FLIGHT = 64
const BEFORE_KILL_MS = 4000
const GAP_MS = 2000
const AFTER_PROMOTION_MS = 3000 // of load once Accepts are back and the codes from before the kill are replayed
const FRESH_USERS = 2400
const WRONG_USERS = 100
const SECRET = 'drill-shared-secret'

/** One login as a client saw it. */
interface Login {
  via: 'radius' | 'cli'
  user: string
  code: string
  kind: 'fresh' | 'replay' | 'wrong'
  sentAt: number
  answeredAt: number
  answer: 'accept' | 'reject' | 'none'
}

/** One CLI command that changes state, and when it reported done. */
interface Done {
  what: 'enrol' | 'failure'
  user: string
  secret?: string
  doneAt: number
  reason?: string
}

let cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => {})
  cleanup = []
})

const step = (ms = Date.now()) => Math.floor(ms / 30_000)

/** `walDelayMs`: the standby's WAL arrives that late (a slow link); what is on its way dies with the primary. */
async function drill(sync: boolean, walDelayMs = 0) {
  const work = mkdtempSync(join(tmpdir(), 'tfactl-drill-'))
  cleanup.push(async () => rmSync(work, {recursive: true, force: true}))
  const pair: PgPair = await startPair('tfactl', sync, {walDelayMs})
  cleanup.push(async () => pair.destroy())
  const url = pair.url('tfactl', 'target_session_attrs=read-write')
  const keyFile = join(work, 'keys', 'tfactl.key')
  const cli = (args: string[]): Promise<Run> => tfactl([...args, '--store', url, '--key-file', keyFile], {timeoutMs: 30_000})

  // window 3: codes stay good for the whole drill; a lockout after 3 failures
  expect((await cli(['twofactor:enable', '--ssh', '--fail-delay', '0', '--window', '3', '--max-failures', '3', '--lockout', '600', '--json'])).code).toBe(0)
  const names = [
    ...Array.from({length: FRESH_USERS}, (_, i) => `r${i}`),
    ...Array.from({length: WRONG_USERS}, (_, i) => `w${i}`),
    ...Array.from({length: 200}, (_, i) => `c${i}`),
    ...Array.from({length: 100}, (_, i) => `l${i}`),
    'last-login',
    'last-failure',
  ]
  writeFileSync(join(work, 'users'), names.join('\n'))
  const enrolled = await cli(['user:secret:renew', '--users-file', join(work, 'users'), '--qr', 'none', '--json'])
  expect(enrolled.code, enrolled.stderr).toBe(0)
  const keys = new Map<string, Uint8Array>(enrolled.json.users.map((u: {user: string; secret: string}) => [u.user, base32Decode(u.secret)]))
  await pair.streaming()

  const clients = writeClients(join(work, 'clients'), [`127.0.0.1 ${SECRET} code`])
  const responders: Responder[] = []
  for (let i = 0; i < 2; i++) {
    const r = await startResponder(['--clients', clients, '--store', url, '--key-file', keyFile, '--db-connections', '8'])
    responders.push(r)
    cleanup.push(async () => void (await r.stop()))
  }
  const pids = responders.map((r) => r.child.pid)

  const logins: Login[] = []
  const done: Done[] = []
  const accepted: Login[] = [] // codes accepted so far (to replay)
  let replayFirst: Login[] = [] // after the promotion: the codes accepted just before the kill
  let stop = false
  let killed = false
  let nextFresh = 0
  let wrongSent = 0

  const client = radiusClient(SECRET)
  cleanup.push(async () => client.close())
  let outstanding = 0
  let skipped = 0
  const radius = async (user: string, code: string, kind: Login['kind'], n: number) => {
    const sentAt = Date.now()
    outstanding++
    const a = await client.ask(responders[n % 2].port, user, code, 5000).finally(() => outstanding--)
    const login: Login = {
      via: 'radius',
      user,
      code,
      kind,
      sentAt,
      answeredAt: Date.now(),
      answer: a === 'timeout' ? 'none' : a === 'accept' ? 'accept' : 'reject',
    }
    logins.push(login)
    if (login.answer === 'accept') accepted.push(login)
  }
  // the RADIUS load: RATE/s, as long as fewer than MAX_IN_FLIGHT wait for an answer (a slow
  // machine gets fewer requests rather than a backlog that would hide when Accepts come back)
  const load = (async () => {
    const started = Date.now()
    const inFlight: Promise<void>[] = []
    for (let n = 0; !stop; ) {
      const due = Math.floor(((Date.now() - started) * RATE) / 1000)
      for (; n < due; n++) {
        if (outstanding >= MAX_IN_FLIGHT) {
          skipped++
          continue
        }
        const slot = n % 10
        const replayable = replayFirst.length > 0 || accepted.length > 0
        if (slot === 9) {
          // wrong codes: users w0… before the kill, the other half after it (so that a count read at the end is the one from before)
          const user = `w${(killed ? WRONG_USERS / 2 : 0) + (wrongSent++ % (WRONG_USERS / 2))}`
          const code = hotp(keys.get(user)!, step(), 6)
          inFlight.push(radius(user, code === '000000' ? '000001' : '000000', 'wrong', n))
        } else if ((slot === 7 || slot === 8 || (slot >= 5 && replayFirst.length > 0)) && replayable) {
          const old = replayFirst.pop() ?? accepted[Math.floor(Math.random() * accepted.length)]
          inFlight.push(radius(old.user, old.code, 'replay', n))
        } else if (nextFresh < FRESH_USERS) {
          const user = `r${nextFresh++}`
          inFlight.push(radius(user, hotp(keys.get(user)!, step(), 6), 'fresh', n))
        }
      }
      await sleep(2)
    }
    await Promise.all(inFlight)
  })()
  // the CLI: enrolments on one side; wrong codes (3 per user: a lockout), fresh codes and their replays on the other
  // CLI commands, a pause between two (each run is a Node start: on two cores, back-to-back runs would starve the responders)
  const enrolments = (async () => {
    for (let i = 0; !stop; i++) {
      const r = await cli(['user:secret:renew', `e${i}`, '--qr', 'none', '--json'])
      if (r.code === 0) done.push({what: 'enrol', user: `e${i}`, secret: r.json.users[0].secret, doneAt: Date.now()})
      await sleep(250)
    }
  })()
  const cliLogin = async (user: string, code: string, kind: Login['kind']) => {
    const sentAt = Date.now()
    const r = await cli(['login:check', user, '--service', 'ssh', '--code', code, '--json'])
    const login: Login = {via: 'cli', user, code, kind, sentAt, answeredAt: Date.now(), answer: r.code === 0 ? 'accept' : r.code === 1 ? 'reject' : 'none'}
    logins.push(login)
    return {login, reason: r.json?.reason as string | undefined}
  }
  const checks = (async () => {
    for (let i = 0; !stop; i++) {
      // a wrong code (three lock the user), a fresh code, and that code again (a replay)
      const failing = `l${Math.floor(i / 3)}`
      const f = await cliLogin(failing, '000000', 'wrong')
      if (f.reason === 'code_invalid') done.push({what: 'failure', user: failing, doneAt: f.login.answeredAt, reason: f.reason})
      const user = `c${i}`
      const fresh = await cliLogin(user, hotp(keys.get(user)!, step(), 6), 'fresh')
      if (fresh.login.answer === 'accept') await cliLogin(user, fresh.login.code, 'replay')
      await sleep(250)
    }
  })()

  cleanup.push(async () => {
    stop = true
    await Promise.allSettled([load, enrolments, checks])
  })

  // the kill comes after BEFORE_KILL_MS of load, and once commands have reported enough done
  // (on a slow machine a CLI run can take seconds); at most 20 s
  const loadStarted = Date.now()
  const enough = () =>
    done.filter((d) => d.what === 'enrol').length >= 2 &&
    done.filter((d) => d.what === 'failure').length >= 3 &&
    accepted.length >= 100 &&
    accepted.filter((l) => l.answeredAt > Date.now() - 1000).length >= 20 // logins flowing at the kill
  while (Date.now() - loadStarted < BEFORE_KILL_MS || (!enough() && Date.now() - loadStarted < 12_000)) await sleep(100)
  // the last acknowledged writes: a login, a failure and an enrolment, each reported done just before the kill
  const lastEnrolment = await cli(['user:secret:renew', 'last-enrolment', '--qr', 'none', '--json']) // the slowest (it reads every user)
  const [lastFailure, lastLogin] = await Promise.all([
    cliLogin('last-failure', '000000', 'wrong'),
    cliLogin('last-login', hotp(keys.get('last-login')!, step(), 6), 'fresh'),
  ])
  expect(lastLogin.login.answer).toBe('accept')
  expect(lastFailure.reason).toBe('code_invalid')
  expect(lastEnrolment.code).toBe(0)
  done.push({what: 'failure', user: 'last-failure', doneAt: lastFailure.login.answeredAt, reason: lastFailure.reason})
  done.push({what: 'enrol', user: 'last-enrolment', secret: lastEnrolment.json.users[0].secret, doneAt: Date.now()})
  const streamed = pair.primary.tool('psql', [
    '-qAt',
    '-d',
    'postgres',
    '-c',
    "SELECT coalesce(extract(epoch FROM replay_lag) * 1000, 0)::int || ' ' || pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication",
  ])
  const killedAt = Date.now()
  killed = true
  pair.crashPrimary()
  const killDone = Date.now()
  await sleep(GAP_MS)
  const promotingAt = Date.now()
  await pair.promote()
  const promotedAt = Date.now()
  // once Accepts are back, the codes accepted in the last 2 s before the kill are replayed first
  const acceptedSince = (t: number) => logins.some((l) => l.answer === 'accept' && l.sentAt >= t)
  while (!acceptedSince(promotingAt) && Date.now() - promotingAt < 15_000) await sleep(50)
  replayFirst = accepted.filter((l) => l.answeredAt <= killedAt && l.answeredAt > killedAt - 2000)
  const lastReplay = await cliLogin('last-login', lastLogin.login.code, 'replay') // the last code accepted before the kill, once more
  const replaying = Date.now()
  while ((replayFirst.length > 0 || Date.now() - replaying < AFTER_PROMOTION_MS) && Date.now() - replaying < 15_000) await sleep(50)
  await sleep(1000) // the last replays' answers
  stop = true
  await Promise.all([load, enrolments, checks])
  for (const r of responders) expect(r.child.exitCode, r.logs()).toBeNull() // never restarted
  expect(responders.map((r) => r.child.pid)).toEqual(pids)

  // the state on the new primary, read through the store's own code
  const store = new PgStore(`postgresql://postgres@127.0.0.1:${pair.standby.port}/tfactl`, {keyFile})
  let doc: Doc
  try {
    doc = await store.read()
  } finally {
    await store.close()
  }

  const perCode = new Map<string, number>()
  for (const l of logins) if (l.answer === 'accept') perCode.set(`${l.user} ${l.code}`, (perCode.get(`${l.user} ${l.code}`) ?? 0) + 1)
  const twice = [...perCode.values()].filter((n) => n > 1).length
  const beforeKill = (l: Login) => l.answeredAt < killedAt
  const acceptedBefore = logins.filter((l) => l.answer === 'accept' && beforeKill(l))
  const stepsLost = acceptedBefore.filter((l) => {
    const last = doc.users.get(l.user)?.lastUsedStep ?? null
    return last === null || !stepAccepted(last, l, keys)
  }).length
  const enrolledBefore = done.filter((d) => d.what === 'enrol' && d.doneAt < killedAt)
  const enrolmentsLost = enrolledBefore.filter((d) => doc.users.get(d.user)?.secret !== d.secret).length
  // every failure a command reported (before the kill, or after the promotion) is counted on the new primary; three lock the user
  const failuresBefore = new Set(done.filter((d) => d.what === 'failure' && d.doneAt < killedAt).map((d) => d.user))
  const failures = new Map<string, number>()
  for (const d of done) if (d.what === 'failure') failures.set(d.user, (failures.get(d.user) ?? 0) + 1)
  const failuresBack = [...failures].filter(([user, n]) => {
    const u = doc.users.get(user)
    return !u || (n >= 3 ? !u.lockedUntil : u.failures < n)
  }).length
  // fail closed: what was sent after the kill and answered before the promotion began
  // failure counts from RADIUS: each wrong code answered (Reject) before the kill was a counted failure
  const radiusFailures = new Map<string, number>()
  for (const l of logins)
    if (l.via === 'radius' && l.kind === 'wrong' && l.answer === 'reject' && beforeKill(l)) radiusFailures.set(l.user, (radiusFailures.get(l.user) ?? 0) + 1)
  const radiusFailuresBack = [...radiusFailures].filter(([user, n]) => {
    const u = doc.users.get(user)
    return !u || (n >= 3 ? !u.lockedUntil : u.failures < n)
  }).length
  const gap = logins.filter((l) => l.sentAt >= killDone && l.answeredAt < promotingAt)
  const sentInGap = logins.filter((l) => l.sentAt >= killDone && l.sentAt < promotingAt)
  const inGapAccepted = gap.filter((l) => l.answer === 'accept').length
  const firstAccept = Math.min(...logins.filter((l) => l.answer === 'accept' && l.sentAt >= promotingAt).map((l) => l.answeredAt))
  const radiusSent = logins.filter((l) => l.via === 'radius')
  const seconds = (Date.now() - loadStarted) / 1000
  const figures = {
    replication: sync ? 'synchronous' : 'asynchronous',
    walDelayMs,
    logins: logins.length,
    radiusPerSecond: Math.round(radiusSent.length / seconds),
    skippedAtMaxInFlight: skipped,
    acceptedBeforeKill: acceptedBefore.length,
    replayed: logins.filter((l) => l.kind === 'replay').length,
    replayedAfterPromotion: logins.filter((l) => l.kind === 'replay' && l.sentAt >= promotingAt).length,
    lagAtKill: streamed.trim(),
    codesAcceptedTwice: twice,
    acceptedStepsLost: stepsLost,
    enrolmentsBeforeKill: enrolledBefore.length,
    enrolmentsLost,
    usersWithFailuresBeforeKill: failuresBefore.size,
    failureCountsGoneBack: failuresBack,
    radiusFailureUsers: radiusFailures.size,
    radiusFailureCountsGoneBack: radiusFailuresBack,
    answersBeforeKill: Object.fromEntries(
      (['fresh', 'replay', 'wrong'] as const).map((kind) => [
        kind,
        Object.fromEntries(
          (['accept', 'reject', 'none'] as const).map((a) => [a, logins.filter((l) => l.kind === kind && l.answer === a && beforeKill(l)).length]),
        ),
      ]),
    ),
    lastLoginReplayed: `${lastReplay.login.answer} ${lastReplay.reason ?? ''}`,
    acceptedInLastSecond: acceptedBefore.filter((l) => l.answeredAt > killedAt - 1000).length,
    sentInGap: sentInGap.length,
    gapAnswers: {accept: inGapAccepted, reject: gap.filter((l) => l.answer === 'reject').length, none: gap.filter((l) => l.answer === 'none').length},
    killAfterMs: killedAt - loadStarted,
    promoteMs: promotedAt - promotingAt,
    firstAcceptAfterPromotionMs: firstAccept - promotingAt,
  }
  console.log(`failover drill: ${JSON.stringify(figures)}`)
  if (process.env.DRILL_DEBUG) {
    console.log(
      `sent in the gap: ${sentInGap.length}; answered (ms after sending): ${sentInGap
        .map((l) => `${l.answer}:${l.answeredAt - l.sentAt}`)
        .slice(0, 40)
        .join(' ')}`,
    )
    console.log(responders.map((r) => r.logs()).join('\n'))
  }
  return figures
}

/** Did the stored last step cover the step `l`'s code was accepted at? (The code matched one step in the window.) */
function stepAccepted(lastUsedStep: number, l: Login, keys: Map<string, Uint8Array>): boolean {
  const key = keys.get(l.user)
  if (!key) return true // enrolled during the drill: checked with the enrolments
  for (let s = step(l.sentAt) - 3; s <= step(l.answeredAt) + 3; s++) if (hotp(key, s, 6) === l.code) return lastUsedStep >= s
  return false
}

describe('failover drill: the primary killed under load, the standby promoted', () => {
  it('with a synchronous standby: no code twice, nothing acknowledged lost, fail closed in the gap, Accepts again within 10 s', async () => {
    const f = await drill(true)
    expect(f.acceptedBeforeKill).toBeGreaterThan(100)
    expect(f.replayedAfterPromotion).toBeGreaterThan(50)
    expect(f.codesAcceptedTwice).toBe(0)
    expect(f.acceptedStepsLost).toBe(0)
    expect(f.enrolmentsBeforeKill).toBeGreaterThan(0)
    expect(f.enrolmentsLost).toBe(0)
    expect(f.usersWithFailuresBeforeKill).toBeGreaterThan(0)
    expect(f.failureCountsGoneBack).toBe(0)
    expect(f.radiusFailureUsers).toBeGreaterThan(10)
    expect(f.radiusFailureCountsGoneBack).toBe(0)
    expect(f.gapAnswers.accept).toBe(0)
    expect(f.sentInGap).toBeGreaterThan(100)
    expect(f.gapAnswers.reject).toBeGreaterThan(0)
    expect(f.firstAcceptAfterPromotionMs).toBeLessThan(10_000)
  }, 120_000)

  it('with an asynchronous standby 8 s behind: fail closed in the gap, Accepts again within 10 s, and the drill sees what was lost', async () => {
    // a slow link (DRILL_WAL_DELAY_MS, default 8000): what the primary acknowledged in its last
    // seconds never reached the standby; with 0, the standby on loopback is milliseconds behind
    const delay = Number(process.env.DRILL_WAL_DELAY_MS ?? 8000)
    const f = await drill(false, delay)
    expect(f.gapAnswers.accept).toBe(0)
    expect(f.firstAcceptAfterPromotionMs).toBeLessThan(10_000)
    expect(f.acceptedBeforeKill).toBeGreaterThan(100)
    if (delay >= 8000) {
      // the last login, failure and enrolment acknowledged before the kill were on their way to the
      // standby: the counters that stay at zero with a synchronous standby count them
      expect(f.codesAcceptedTwice).toBeGreaterThan(0)
      expect(f.enrolmentsLost).toBeGreaterThan(0)
      expect(f.failureCountsGoneBack).toBeGreaterThan(0)
    }
  }, 120_000)
})
