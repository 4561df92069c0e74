// The audit trail records each command's run once: a change as it commits (its lines come from
// the change set, under the store's lock), and the run's own line only when no change already
// said how it ended (refusals before any change, runs that changed nothing). On both backends.
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {backendStores, enable, wrongCode} from './support.js'

const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'
const make = backendStores('audited')

describe.each(['file', 'postgres'] as const)('each run is audited exactly once (%s)', (backend) => {
  it('records a committed change once, a run that changed nothing once, and a refusal that committed a counted failure once, as the refusal', async () => {
    const s = await make(backend)
    let seen = 0
    /** The lines the last run added: [command, user, outcome, reason]. */
    const added = async () => {
      const events = (await s.run(['audit', '--json'])).json.events
      const fresh = events.slice(seen).map((e: any) => [e.command, e.user, e.outcome, e.reason])
      seen = events.length
      return fresh
    }
    await enable(s)
    expect(await added()).toEqual([['twofactor:enable', null, 'ok', null]])
    expect((await s.run(['user:secret:import', 'alice', '--secret-stdin', '--json'], {input: SECRET})).code).toBe(0)
    expect(await added()).toEqual([['user:secret:import', 'alice', 'ok', null]])
    const bypass = await s.run(['user:bypass', 'alice', '--json'])
    expect(bypass.code).toBe(0)
    expect(await added()).toEqual([['user:bypass', 'alice', 'ok', null]])
    // nothing to unlock: no change, the run's own line
    expect((await s.run(['user:unlock', 'alice', '--json'])).code).toBe(0)
    expect(await added()).toEqual([['user:unlock', 'alice', 'ok', null]])
    // a wrong first code for a pending secret is counted as it commits: one line, the refusal
    expect((await s.run(['user:secret:renew', 'alice', '--pending', '--qr', 'none', '--json'])).code).toBe(0)
    expect(await added()).toEqual([['user:secret:renew', 'alice', 'ok', null]])
    expect((await s.run(['user:secret:confirm', 'alice', '--code', '000000', '--json'], {env: {SUDO_USER: 'alice'}})).code).toBe(1)
    expect(await added()).toEqual([['user:secret:confirm', 'alice', 'error', 'code_invalid']])
    // self-service under sudo with a wrong proof: the counted failure commits, audited as the refusal
    expect((await s.run(['user:secret:unset', 'alice', '--yes', '--code', wrongCode('123456'), '--json'], {env: {SUDO_USER: 'alice'}})).code).toBe(4)
    expect(await added()).toEqual([['user:secret:unset', 'alice', 'error', 'forbidden']])
    // a refused bulk run: the counted failure's line, and the run's line for every other user it named
    expect(
      (await s.run(['user:secret:renew', 'alice', 'bob', '--qr', 'none', '--code', wrongCode('123456'), '--json'], {env: {SUDO_USER: 'alice'}})).code,
    ).toBe(4)
    expect(await added()).toEqual([
      ['user:secret:renew', 'alice', 'error', 'forbidden'],
      ['user:secret:renew', 'bob', 'error', 'forbidden'],
    ])
    // a refusal before any change: the run's own line
    expect((await s.run(['user:secret:resync', 'bob', '--code', '123456', '--code', '234567', '--json'])).code).toBe(2)
    expect(await added()).toEqual([['user:secret:resync', 'bob', 'error', 'usage']])
    const trail = JSON.stringify((await s.run(['audit', '--json'])).json)
    expect(trail).not.toContain(bypass.json.code)
    expect(trail).not.toContain(SECRET)
  })

  it('records a run that fails after its change committed twice: the change as it committed, then the error', async () => {
    const s = await make(backend)
    await enable(s)
    // a directory where the QR image goes: the secret is stored, then writing the image fails
    const qrDir = join(s.dir, 'qr')
    mkdirSync(join(qrDir, 'alice.png', 'taken'), {recursive: true, mode: 0o700})
    const r = await s.run(['user:secret:renew', 'alice', '--qr-dir', qrDir, '--qr', 'none', '--json'])
    expect(r.code).toBe(3)
    expect((await s.run(['user:list', '--json'])).json.users.map((u: any) => u.user)).toContain('alice')
    const events = (await s.run(['audit', '--json'])).json.events.filter((e: any) => e.command === 'user:secret:renew')
    expect(events.map((e: any) => [e.user, e.outcome, e.reason])).toEqual([
      ['alice', 'ok', null],
      ['alice', 'error', 'error'],
    ])
  })
})
