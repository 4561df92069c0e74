// Several database hosts in one store URL (libpq style): tfactl finds the writable primary among
// them, never writes to a standby, and doctor says what it reached and how replication stands.
// A real primary and a real standby (pg_basebackup -R), started by the tests (as root).
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {oathtool, type RunOptions, tfactl} from '../helpers/cli.js'
import {type PgPair, startPair} from '../helpers/postgres.js'
import {awayFromBoundary, check, expectDecision, expectJsonError, withinOneStep} from './support.js'

let pair: PgPair
let work: string
beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'tfactl-ha-'))
  pair = await startPair('tfactl', true)
  await pair.streaming()
}, 60_000)
afterAll(() => {
  pair?.destroy()
  if (work) rmSync(work, {recursive: true, force: true})
})

const key = () => join(work, 'keys', 'tfactl.key')
const on = (url: string) => ({
  run: (args: string[], opts: RunOptions = {}) => tfactl([...args, '--store', url, '--key-file', key()], opts),
})
const hostPort = (port: number) => `127.0.0.1:${port}`

describe('a store URL naming several hosts', () => {
  it('writes to the primary when a standby is listed first, and reads it back on the standby', async () => {
    const s = on(`postgresql://postgres@${hostPort(pair.standby.port)},${hostPort(pair.primary.port)}/tfactl`)
    expect((await s.run(['twofactor:enable', '--fail-delay', '0', '--json'])).code).toBe(0)
    const r = await s.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const secret = r.json.users[0].secret
    await withinOneStep(30, async () => expectDecision(await check(s as never, 'alice', {code: await oathtool(secret)}), true, 'code_accepted'))
    // synchronous: what the primary acknowledged is on the standby already
    const onStandby = pair.standby.tool('psql', ['-qAt', '-d', 'tfactl', '-c', "SELECT count(*) FROM tfactl_users WHERE name = 'alice'"]).trim()
    expect(onStandby).toBe('1')
  })

  it('takes host= and port= lists (socket directories), as libpq does', async () => {
    const url = `postgresql://postgres@/tfactl?host=${pair.standby.dir},${pair.primary.dir}&port=${pair.standby.port},${pair.primary.port}`
    const r = await on(url).run(['user:list', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users.map((u: {user: string}) => u.user)).toContain('alice')
    expect((await on(url).run(['twofactor:enable', '--fail-delay', '0', '--json'])).code).toBe(0) // a write
  })

  it('with target_session_attrs=any takes the first host that answers, and a write there fails closed (exit 3)', async () => {
    const s = on(`postgresql://postgres@${hostPort(pair.standby.port)},${hostPort(pair.primary.port)}/tfactl?target_session_attrs=any`)
    expect(expectJsonError(await s.run(['user:secret:renew', 'bob', '--qr', 'none', '--json']), 3)).toMatch(/read-only/)
    expect((await s.run(['user:list', '--json'])).code).toBe(0) // reading a standby is fine
  })

  it('fails closed naming every host when none is a writable primary (exit 3)', async () => {
    const s = on(`postgresql://postgres@${hostPort(pair.standby.port)},127.0.0.1:1/tfactl`)
    const message = expectJsonError(await check(s as never, 'alice', {code: '123456'}), 3)
    expect(message).toMatch(/standby/)
    expect(message).toMatch(/127\.0\.0\.1:1: /)
  })

  it('refuses an unknown or read-only target_session_attrs and a port list that does not fit (exit 2)', async () => {
    const base = `postgresql://postgres@${hostPort(pair.primary.port)},${hostPort(pair.standby.port)}/tfactl`
    expect(expectJsonError(await on(`${base}?target_session_attrs=writable`).run(['user:list', '--json']), 2)).toMatch(/target_session_attrs=writable/)
    expect(expectJsonError(await on(`${base}?target_session_attrs=standby`).run(['user:list', '--json']), 2)).toMatch(/every login writes/)
    expect(expectJsonError(await on('postgresql://postgres@/tfactl?host=/a,/b,/c&port=1,2').run(['user:list', '--json']), 2)).toMatch(/3 hosts but 2 ports/)
  })

  it('fails closed when the synchronous standby does not confirm a login (exit 3 within 10 s), and works when it is back', async () => {
    const s = on(pair.url('tfactl'))
    const secret = (await s.run(['user:secret:show', 'alice', '--json'])).json.secret
    pair.standby.stop()
    try {
      const doctor = await s.run(['doctor', '--json'])
      const replication = doctor.json.checks.find((c: {check: string}) => c.check === 'replication')
      expect(replication).toMatchObject({status: 'finding'})
      expect(replication.message).toMatch(/no standby is in sync/)
      await awayFromBoundary(30, 12)
      const started = Date.now()
      const r = await check(s as never, 'alice', {code: await oathtool(secret)})
      expect(Date.now() - started).toBeLessThan(10_000)
      expect(expectJsonError(r, 3)).toMatch(/not confirmed within 5 s .*synchronous standby/)
    } finally {
      pair.standby.start()
    }
    await pair.streaming()
    await withinOneStep(30, async () =>
      expectDecision(await check(s as never, 'alice', {code: await oathtool(secret, {now: '30 seconds'})}), true, 'code_accepted'),
    )
  }, 60_000)

  it('doctor names the host it reached, its role, and the synchronous standby in sync with its lag', async () => {
    const r = await on(pair.url('tfactl')).run(['doctor', '--json'])
    const byCheck = Object.fromEntries(r.json.checks.map((c: {check: string}) => [c.check, c]))
    expect(byCheck.database.message).toMatch(new RegExp(`at 127\\.0\\.0\\.1:${pair.primary.port} \\(host 1 of 2\\)`))
    expect(byCheck['database role']).toMatchObject({status: 'ok', message: 'primary (read-write)'})
    expect(byCheck.replication.status).toBe('ok')
    expect(byCheck.replication.message).toMatch(/^synchronous .*streaming sync, lag \d+ bytes/)
    const standby = await on(`postgresql://postgres@${hostPort(pair.standby.port)}/tfactl?target_session_attrs=any`).run(['doctor', '--json'])
    const roles = standby.json.checks.filter((c: {check: string}) => c.check === 'database role')
    expect(roles[0]).toMatchObject({status: 'finding'})
    expect(roles[0].message).toMatch(/^standby/)
  })
})
