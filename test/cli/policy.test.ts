// The 2FA policy (the rules, lockout, recovery codes, bypass)
// through the real CLI, with codes from oathtool. Every test makes its own store.
import {readdirSync, readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {Store} from '../../src/store/file/store.js'
import {oathtool, tempStore} from '../helpers/cli.js'
import {awayFromBoundary, check, enable, expectDecision, expectJsonError, renew, type TempStore, withinOneStep, wrongCode} from './support.js'

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

async function listed(user: string): Promise<any> {
  const r = await store.run(['user:list', '--json'])
  expect(r.code, r.stderr).toBe(0)
  return r.json.users.find((u: any) => u.user === user)
}

async function shownSecret(user: string): Promise<string> {
  const r = await store.run(['user:secret:show', user, '--qr', 'none', '--json'])
  expect(r.code, r.stderr).toBe(0)
  return r.json.secret
}

async function recoveryCodes(user: string, count: number): Promise<string[]> {
  const r = await store.run(['user:recovery:generate', user, '--count', String(count), '--json'])
  expect(r.code, r.stderr).toBe(0)
  return r.json.codes
}

async function bypass(user: string, ...flags: string[]): Promise<{user: string; code: string; expiresAt: string}> {
  const r = await store.run(['user:bypass', user, ...flags, '--json'])
  expect(r.code, r.stderr).toBe(0)
  return r.json
}

describe('TrueNAS behaviour', () => {
  it('lets a user without a secret log in with the password alone while 2FA is on', async () => {
    await enable(store, '--ssh')
    expectDecision(await check(store, 'alice'), true, 'no_secret', true)
    expectDecision(await check(store, 'alice', {service: 'ssh'}), true, 'no_secret', false)
  })

  it('answers code_required without a code, then accepts a valid oathtool code', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    expectDecision(await check(store, 'alice'), false, 'code_required')
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
  })

  it("renewing changes the secret: the old secret's codes stop working and the new one's work", async () => {
    await enable(store)
    const {secret: old} = await renew(store, 'alice')
    const {secret: fresh} = await renew(store, 'alice')
    expect(fresh).not.toBe(old)
    expect(await shownSecret('alice')).toBe(fresh)
    expectDecision(await check(store, 'alice', {code: await oathtool(old)}), false, 'code_invalid')
    expectDecision(await check(store, 'alice', {code: await oathtool(fresh)}), true, 'code_accepted')
  })

  it('renewing resets the last accepted step and the failure count and voids the recovery codes', async () => {
    await enable(store, '--max-failures', '3')
    const {secret: old} = await renew(store, 'alice')
    const [recovery] = await recoveryCodes('alice', 2)
    const oldCode = await oathtool(old)
    expectDecision(await check(store, 'alice', {code: oldCode}), true, 'code_accepted')
    // Two failures: one more before the renewal's reset would lock alice.
    expectDecision(await check(store, 'alice', {code: wrongCode(oldCode)}), false, 'code_invalid')
    expectDecision(await check(store, 'alice', {code: wrongCode(oldCode)}), false, 'code_invalid')
    const {secret: fresh} = await renew(store, 'alice')
    expect((await listed('alice')).recoveryCodesLeft).toBe(0)
    // The voided recovery code fails: failure 1 after a reset, 3 (a lockout) without one.
    expectDecision(await check(store, 'alice', {code: recovery}), false, 'code_invalid')
    // A code of the step before the old accepted one: replayed unless the last step was reset.
    const r = await check(store, 'alice', {code: await oathtool(fresh, {now: '30 seconds ago'})})
    expectDecision(r, true, 'code_accepted')
  })

  it('unsetting clears a lockout and voids the recovery codes', async () => {
    await enable(store, '--max-failures', '1')
    const {secret} = await renew(store, 'alice')
    await recoveryCodes('alice', 2)
    expectDecision(await check(store, 'alice', {code: wrongCode(await oathtool(secret))}), false, 'code_invalid')
    expect(await listed('alice')).toMatchObject({lockedOut: true, recoveryCodesLeft: 2})
    const unset = await store.run(['user:secret:unset', 'alice', '--yes', '--json'])
    expect(unset.code, unset.stderr).toBe(0)
    expect(unset.json).toMatchObject({user: 'alice', changed: true})
    expectDecision(await check(store, 'alice'), true, 'no_secret', true)
    const entry = await listed('alice')
    expect(entry?.lockedOut ?? false).toBe(false)
    expect(entry?.recoveryCodesLeft ?? 0).toBe(0)
  })

  it("keeps each user's own interval and digits side by side (30/6, 60/7, 30/8)", async () => {
    await enable(store)
    const users = [
      {user: 'alice', interval: 30, digits: 6},
      {user: 'bob', interval: 60, digits: 7},
      {user: 'carol', interval: 30, digits: 8},
    ]
    const secrets: Record<string, string> = {}
    for (const {user, interval, digits} of users) secrets[user] = (await renew(store, user, '--interval', String(interval), '--digits', String(digits))).secret
    const list = await store.run(['user:list', '--json'])
    for (const u of users) expect(list.json.users).toContainEqual(expect.objectContaining({...u, configured: true}))
    for (const {user, interval, digits} of users) {
      const code = await oathtool(secrets[user], {interval, digits})
      expect(code).toHaveLength(digits)
      expectDecision(await check(store, user, {code}), true, 'code_accepted')
    }
    // carol's secret with alice's parameters (6 digits) is not carol's code.
    expectDecision(await check(store, 'carol', {code: await oathtool(secrets.carol)}), false, 'code_invalid')
  })

  it("refuses intervals other than 30 and 60 (exit 2) and leaves the user's state unchanged", async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const before = store.bytes()
    for (const interval of ['15', '45', '90']) {
      expectJsonError(await store.run(['user:secret:renew', 'alice', '--interval', interval, '--qr', 'none', '--json']), 2)
      expect(store.bytes()).toEqual(before)
    }
    const imported = await store.run(['user:secret:import', 'alice', '--secret-stdin', '--interval', '45', '--json'], {
      input: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP',
    })
    expectJsonError(imported, 2)
    expect(store.bytes()).toEqual(before)
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
  })

  it('refuses a replayed code and still requires 2FA afterwards', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const code = await oathtool(secret)
    expectDecision(await check(store, 'alice', {code}), true, 'code_accepted')
    expectDecision(await check(store, 'alice', {code}), false, 'code_replayed')
    expectDecision(await check(store, 'alice'), false, 'code_required')
  })

  it('STIG mode denies a ui login without a secret, forces SSH 2FA on and refuses turning 2FA or SSH 2FA off (exit 4) until --no-stig', async () => {
    await renew(store, 'root') // STIG mode needs an administrator with a secret
    expect(await enable(store, '--stig')).toMatchObject({enabled: true, stig: true, ssh: true})
    expectDecision(await check(store, 'alice'), false, 'stig_requires_2fa')
    const before = store.bytes()
    expectJsonError(await store.run(['twofactor:disable', '--json']), 4)
    expectJsonError(await store.run(['twofactor:enable', '--no-ssh', '--json']), 4)
    expect(store.bytes()).toEqual(before)
    expect(await enable(store, '--no-stig')).toMatchObject({enabled: true, stig: false, ssh: true})
    expectDecision(await check(store, 'alice'), true, 'no_secret', true)
    const off = await store.run(['twofactor:disable', '--json'])
    expect(off.code, off.stderr).toBe(0)
  })
})

describe('clock skew', () => {
  it('tells a human the clock on one side is off by about 30 seconds for a code of the previous step', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const r = await withinOneStep(30, async () => store.run(['login:check', 'alice', '--code', await oathtool(secret, {now: '30 seconds ago'})]))
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/allowed \(code_accepted\)/)
    expect(r.stdout).toMatch(/clock on one side is off by about 30 seconds/)
  })

  it("reports the skew of a 60 s user in that user's steps (about 60 seconds for one step)", async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice', '--interval', '60')
    const r = await withinOneStep(60, async () => store.run(['login:check', 'alice', '--code', await oathtool(secret, {interval: 60, now: '60 seconds ago'})]))
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/allowed \(code_accepted\)/)
    expect(r.stdout).toMatch(/off by about 60 seconds/)
  })
})

describe('lockout', () => {
  it('locks a user after 5 failed checks in separate processes: the 6th, with a correct code, is locked_out until user:unlock', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const wrong = wrongCode(await oathtool(secret))
    for (let i = 1; i <= 5; i++) expectDecision(await check(store, 'alice', {code: wrong}), false, 'code_invalid')
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), false, 'locked_out')
    expect(await listed('alice')).toMatchObject({lockedOut: true})
    const unlock = await store.run(['user:unlock', 'alice', '--json'])
    expect(unlock.code, unlock.stderr).toBe(0)
    expect(unlock.json).toEqual({user: 'alice', changed: true})
    expect(await listed('alice')).toMatchObject({lockedOut: false})
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
  })

  it('resets the failure count on a successful check', async () => {
    await enable(store, '--max-failures', '2')
    const {secret} = await renew(store, 'alice')
    await awayFromBoundary(30, 10)
    // Two accepted codes, each after a failure: the previous step's, then the current one.
    expectDecision(await check(store, 'alice', {code: '000000'}), false, 'code_invalid')
    const a = await check(store, 'alice', {code: await oathtool(secret, {now: '30 seconds ago'})})
    expectDecision(await check(store, 'alice', {code: '000000'}), false, 'code_invalid')
    const b = await check(store, 'alice', {code: await oathtool(secret)})
    expectDecision(a, true, 'code_accepted')
    expectDecision(b, true, 'code_accepted')
  })

  it('ends a lockout by itself after --lockout seconds', async () => {
    await enable(store, '--max-failures', '1', '--lockout', '6')
    const {secret} = await renew(store, 'alice')
    const failedAt = Date.now()
    expectDecision(await check(store, 'alice', {code: wrongCode(await oathtool(secret))}), false, 'code_invalid')
    const lockedBy = Date.now()
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), false, 'locked_out')
    expect(Date.now() - failedAt, 'the machine was too slow to see the lockout').toBeLessThan(6000)
    await sleep(Math.max(0, lockedBy + 6300 - Date.now()))
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
  })

  it('lets a bypass code in while locked out and clears the lockout', async () => {
    await enable(store, '--max-failures', '1')
    const {secret} = await renew(store, 'alice')
    expectDecision(await check(store, 'alice', {code: wrongCode(await oathtool(secret))}), false, 'code_invalid')
    const {code} = await bypass('alice')
    expectDecision(await check(store, 'alice', {code}), true, 'bypass_accepted')
    expect(await listed('alice')).toMatchObject({lockedOut: false})
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
  })

  it('waits the fail delay before answering a failed check, and not a successful one', async () => {
    const on = await store.run(['twofactor:enable', '--fail-delay', '3000', '--json'])
    expect(on.code, on.stderr).toBe(0)
    const {secret} = await renew(store, 'alice')
    const timed = async (code: string) => {
      const start = performance.now()
      const r = await check(store, 'alice', {code})
      return {r, ms: performance.now() - start}
    }
    const failed = await timed('000000')
    expectDecision(failed.r, false, 'code_invalid')
    expect(failed.ms).toBeGreaterThanOrEqual(3000)
    const passed = await timed(await oathtool(secret))
    expectDecision(passed.r, true, 'code_accepted')
    // Same work but for the delay: well under the failed check (1.5 s of start-up noise allowed).
    expect(passed.ms).toBeLessThan(failed.ms - 1500)
  })

  it('has the documented defaults and refuses settings out of range (exit 2)', async () => {
    const status = await store.run(['twofactor:status', '--json'])
    expect(status.json).toMatchObject({maxFailures: 5, lockout: 300, failDelay: 1000})
    for (const flags of [
      ['--max-failures', '101'],
      ['--lockout', '0'],
      ['--lockout', '86401'],
      ['--fail-delay', '10001'],
    ])
      expectJsonError(await store.run(['twofactor:enable', ...flags, '--json']), 2)
    expect(store.bytes()).toBeUndefined()
  })
})

describe('recovery codes', () => {
  it('are printed once as XXXXX-XXXXX base32 codes, 10 by default, and only salted hashes are stored', async () => {
    await enable(store)
    await renew(store, 'alice')
    const r = await store.run(['user:recovery:generate', 'alice', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.user).toBe('alice')
    expect(r.json.codes).toHaveLength(10)
    for (const c of r.json.codes) expect(c).toMatch(/^[A-Z2-7]{5}-[A-Z2-7]{5}$/)
    expect(new Set(r.json.codes).size).toBe(10)
    expect((await listed('alice')).recoveryCodesLeft).toBe(10)
    const dir = dirname(store.path)
    const files = readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8').toUpperCase())
    for (const c of r.json.codes as string[]) for (const text of files) expect(text.includes(c) || text.includes(c.replace('-', ''))).toBe(false)
    const record = (await new Store(store.path).read()).users.get('alice')! // the store and its journal, where a one-user change of the codes goes
    expect(record.recovery!.salt).toEqual(expect.any(String))
    expect(record.recovery!.hashes).toHaveLength(10)
    for (const count of ['0', '21']) expectJsonError(await store.run(['user:recovery:generate', 'alice', '--count', count, '--json']), 2)
  })

  it('each logs in once (recovery_code_accepted), case-insensitively and without the dash, then is code_invalid', async () => {
    await enable(store)
    await renew(store, 'alice')
    const [first, second] = await recoveryCodes('alice', 3)
    expectDecision(await check(store, 'alice', {code: first}), true, 'recovery_code_accepted')
    expectDecision(await check(store, 'alice', {code: first}), false, 'code_invalid')
    const typed = second.replace('-', '').toLowerCase()
    expectDecision(await check(store, 'alice', {code: typed}), true, 'recovery_code_accepted')
    expectDecision(await check(store, 'alice', {code: second}), false, 'code_invalid')
    expect((await listed('alice')).recoveryCodesLeft).toBe(1)
  })
})

describe('admin bypass code', () => {
  it('is printed once with its expiry (default 15 min) and logs in once, then is code_invalid', async () => {
    await enable(store)
    await renew(store, 'alice')
    const before = Date.now()
    const b = await bypass('alice')
    expect(b).toEqual({user: 'alice', code: expect.any(String), expiresAt: expect.any(String)})
    const ttl = Date.parse(b.expiresAt) - before
    expect(ttl).toBeGreaterThan(890_000)
    expect(ttl).toBeLessThanOrEqual(910_000)
    expectDecision(await check(store, 'alice', {code: b.code}), true, 'bypass_accepted')
    expectDecision(await check(store, 'alice', {code: b.code}), false, 'code_invalid')
  })

  it('expires after its TTL: code_invalid', async () => {
    await enable(store)
    await renew(store, 'alice')
    const b = await bypass('alice', '--ttl', '2')
    await sleep(Math.max(0, Date.parse(b.expiresAt) + 300 - Date.now()))
    expectDecision(await check(store, 'alice', {code: b.code}), false, 'code_invalid')
  })
})
