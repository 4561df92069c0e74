// The PostgreSQL responder's group commit (PgStore.responder: logins that arrive together go to
// the database as one batch, one transaction): each login is still decided alone, against the rows
// as the logins before it left them; any database error refuses every login of its batch and
// commits nothing; the next batch works; and two responders on one database accept each code
// once. The logins go through checkLogin with the responder's `login`, as radius:serve's judge
// calls it; the two-responder case runs the real radius:serve.
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {hotp} from '../../src/core/totp.js'
import {checkLogin} from '../../src/login/check.js'
import {openStore, type Responder} from '../../src/store/backend.js'
import {pgWork} from '../../src/store/postgres/store.js'
import {radiusClient, startResponder, writeClients} from '../helpers/radius.js'
import {awayFromBoundary, dbFleets, stepAt} from './support.js'

const db = dbFleets('resp')
const cleanup: (() => Promise<unknown> | unknown)[] = []
afterAll(async () => {
  for (const f of cleanup.reverse()) await f() // before the server goes (dbFleets' afterAll runs after this one)
})

/** A fresh database with `users` enrolled (fail delay 0), and a responder on it as radius:serve opens one. */
async function setUp(users: string[]) {
  const fleet = await db.fleet()
  expect((await fleet.a.run(['twofactor:enable', '--ssh', '--fail-delay', '0', '--window', '1', '--json'])).code).toBe(0)
  const keys = new Map<string, Uint8Array>()
  for (const user of users) keys.set(user, await enrol(fleet.a, user))
  const store = await openStore(fleet.url, {keyFile: join(fleet.keys, 'a', 'tfactl.key'), poolSize: 4})
  cleanup.push(() => store.close())
  const warnings: string[] = []
  const responder = store.responder((w) => warnings.push(w))
  const code = (user: string, step = stepAt(30)) => hotp(keys.get(user)!, step, 6)
  return {fleet, store, responder, code, keys, warnings}
}

async function enrol(host: {run: (args: string[]) => Promise<{code: number | null; json: any; stderr: string}>}, user: string): Promise<Uint8Array> {
  const r = await host.run(['user:secret:renew', user, '--qr', 'none', '--json'])
  expect(r.code, r.stderr).toBe(0)
  return base32Decode(r.json.users[0].secret)!
}

/** One login as radius:serve's judge runs it (a code client: service ui). */
const login = (responder: Responder, user: string, code: string) => checkLogin({login: responder.login}, {user, service: 'ui', method: 'password', code})

/** Logins started in one turn: they reach the database as one batch. */
const together = (responder: Responder, logins: [string, string][]) => Promise.allSettled(logins.map(([user, code]) => login(responder, user, code)))

const allowed = (r: PromiseSettledResult<Awaited<ReturnType<typeof login>>>) => (r.status === 'fulfilled' ? r.value.result.allowed : 'error')

describe('the PostgreSQL responder decides logins in batches', () => {
  it('accepts a code once when the same user sends it twice in one batch; the second sees the first and is a replay', async () => {
    const {responder, code} = await setUp(['alice', 'bob'])
    await awayFromBoundary(30)
    const c = code('alice')
    const read = pgWork.rowsRead
    const r = await together(responder, [
      ['alice', c],
      ['bob', code('bob')],
      ['alice', c],
    ])
    expect(pgWork.rowsRead - read).toBe(2) // one batch: each user's row read once
    expect(r.map(allowed)).toEqual([true, true, false])
    expect(r[2].status === 'fulfilled' && r[2].value.result.reason).toBe('code_replayed')
  })

  it('refuses every login of a batch whose write fails in the database, commits none of them, and the next batch works', async () => {
    const {fleet, responder, code} = await setUp(['alice', 'bob', 'boom'])
    // a database error in the middle of the batch: the write of boom's row raises
    fleet.psql(`CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.name = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$;
                CREATE TRIGGER boom BEFORE UPDATE ON tfactl_users FOR EACH ROW EXECUTE FUNCTION boom()`)
    await awayFromBoundary(30, 8)
    const codes: [string, string][] = ['alice', 'bob', 'boom'].map((u) => [u, code(u)])
    const failed = await together(responder, codes)
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected'])
    for (const r of failed) expect(String((r as PromiseRejectedResult).reason.message)).toMatch(/the login check failed: boom refused/)
    fleet.psql('DROP TRIGGER boom ON tfactl_users')
    // nothing of the failed batch was kept: the same codes are accepted now, once
    expect((await together(responder, codes)).map(allowed)).toEqual([true, true, true])
    expect((await together(responder, codes)).map(allowed)).toEqual([false, false, false])
  })

  it('refuses every login of a batch whose connection is cut in the middle, and the next batch works on a new connection', async () => {
    const {fleet, responder, code} = await setUp(['alice', 'cut'])
    fleet.psql(`CREATE FUNCTION cut() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.name = 'cut' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; END $$;
                CREATE TRIGGER cut BEFORE UPDATE ON tfactl_users FOR EACH ROW EXECUTE FUNCTION cut()`)
    await awayFromBoundary(30, 8)
    const codes: [string, string][] = ['alice', 'cut'].map((u) => [u, code(u)])
    const failed = await together(responder, codes)
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    for (const r of failed) expect(String((r as PromiseRejectedResult).reason.message)).toMatch(/database unreachable|the login check failed/)
    fleet.psql('DROP TRIGGER cut ON tfactl_users')
    expect((await together(responder, codes)).map(allowed)).toEqual([true, true])
  })

  it('refuses within the login bound the logins of a batch the database holds, while other batches go on; the next batch works', {
    timeout: 60_000,
  }, async () => {
    const {fleet, responder, code} = await setUp(['alice', 'slow', 'bob'])
    fleet.psql(`CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.name = 'slow' THEN PERFORM pg_sleep(11); END IF; RETURN NEW; END $$;
                CREATE TRIGGER slow BEFORE UPDATE ON tfactl_users FOR EACH ROW EXECUTE FUNCTION slow()`)
    await awayFromBoundary(30, 20)
    const started = Date.now()
    const held = together(responder, [
      ['alice', code('alice')],
      ['slow', code('slow')],
    ])
    await new Promise((r) => setTimeout(r, 1000))
    expect((await together(responder, [['bob', code('bob')]])).map(allowed)).toEqual([true]) // another batch, another connection
    const failed = await held
    expect(Date.now() - started).toBeLessThan(9_500) // LOGIN_BOUND_MS, and a little
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    for (const r of failed) expect(String((r as PromiseRejectedResult).reason.message)).toMatch(/database unreachable/)
    fleet.psql('DROP TRIGGER slow ON tfactl_users') // waits for the held transaction to end (and roll back)
    expect(
      (
        await together(responder, [
          ['alice', code('alice')],
          ['slow', code('slow')],
        ])
      ).map(allowed),
    ).toEqual([true, true])
  })

  it('sees a row a CLI command changed between two batches', async () => {
    const {fleet, responder, code, keys} = await setUp(['alice', 'bob'])
    await awayFromBoundary(30, 10)
    const step = stepAt(30)
    expect((await together(responder, [['alice', code('alice')]])).map(allowed)).toEqual([true])
    const old = keys.get('alice')!
    const renewed = await enrol(fleet.a, 'alice') // a new secret, written by another process
    const r = await together(responder, [
      ['alice', hotp(old, step + 1, 6)], // the old secret's next code: no longer alice's
      ['bob', code('bob')],
    ])
    expect(r.map(allowed)).toEqual([false, true])
    expect((await together(responder, [['alice', hotp(renewed, step, 6)]])).map(allowed)).toEqual([true])
  })

  it("refuses only the logins of a row the key did not write; the batch's other logins go on", async () => {
    const {fleet, responder, code} = await setUp(['alice', 'mallory'])
    fleet.psql(`UPDATE tfactl_users SET data = jsonb_set(data, '{failures}', '3') WHERE name = 'mallory'`)
    await awayFromBoundary(30)
    const r = await together(responder, [
      ['mallory', code('mallory')],
      ['alice', code('alice')],
    ])
    expect(r[0].status).toBe('rejected')
    expect(String((r[0] as PromiseRejectedResult).reason.message)).toMatch(/user "mallory" was not written with the key/)
    expect(allowed(r[1])).toBe(true)
  })
})

describe('two radius:serve on one PostgreSQL database', () => {
  it('accept each code exactly once when both are sent every code at the same time, twice each', {timeout: 120_000}, async () => {
    const users = Array.from({length: 60}, (_, i) => `u${i}`)
    const {fleet, keys} = await setUp([])
    const list = join(db.work, 'two-users')
    writeFileSync(list, users.join('\n'))
    const r = await fleet.a.run(['user:secret:renew', '--users-file', list, '--qr', 'none', '--json'])
    expect(r.code, r.stderr).toBe(0)
    for (const u of r.json.users as {user: string; secret: string}[]) keys.set(u.user, base32Decode(u.secret)!)
    const secret = 'two-responders-secret'
    const clients = writeClients(join(db.work, 'two-clients'), [`127.0.0.1 ${secret} code`])
    const args = ['--clients', clients, '--store', fleet.url, '--key-file', join(fleet.keys, 'a', 'tfactl.key'), '--db-connections', '4']
    const responders = [await startResponder(args), await startResponder(args)]
    cleanup.push(...responders.map((x) => () => x.stop()))
    const client = radiusClient(secret)
    cleanup.push(() => client.close())
    await awayFromBoundary(30, 10)
    const step = stepAt(30)
    const answers = await Promise.all(
      users.map(async (user) => {
        const c = hotp(keys.get(user)!, step, 6)
        const four = await Promise.all([0, 1, 0, 1].map((n) => client.ask(responders[n].port, user, c, 10_000)))
        return four.filter((a) => a === 'accept').length + (four.includes('timeout') ? 100 : 0)
      }),
    )
    expect(answers).toEqual(users.map(() => 1))
    for (const x of responders) expect(await x.stop()).toBe(0)
  })
})
