// Interop: codes from oathtool, the reference TOTP client, pass login:check for secrets
// that user:secret:renew created; wrong and replayed codes do not.
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {oathtool, tempStore} from '../helpers/cli.js'
import {check, enable, expectDecision, renew, type TempStore, withinOneStep, wrongCode} from '../cli/support.js'

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

describe('oathtool codes for renewed secrets', () => {
  for (const {interval, digits} of [
    {interval: 30, digits: 6},
    {interval: 60, digits: 8},
  ]) {
    it(`accepts a code once, then refuses it as replayed, and refuses a wrong one (${interval} s, ${digits} digits)`, async () => {
      await enable(store)
      const flags = interval === 30 && digits === 6 ? [] : ['--interval', String(interval), '--digits', String(digits)]
      const enrolled = await renew(store, 'alice', ...flags)
      expect(enrolled).toMatchObject({interval, digits, algorithm: 'SHA1'})

      const code = await oathtool(enrolled.secret, {interval, digits})
      expect(code).toMatch(new RegExp(`^\\d{${digits}}$`))
      expectDecision(await check(store, 'alice', {code: wrongCode(code)}), false, 'code_invalid')
      expectDecision(await check(store, 'alice', {code}), true, 'code_accepted')
      expectDecision(await check(store, 'alice', {code}), false, 'code_replayed')
    })
  }

  it("accepts the previous step's code with window 1 and reports skewSteps -1", async () => {
    await enable(store, '--window', '1')
    const {secret} = await renew(store, 'alice')
    const r = await withinOneStep(30, async () => check(store, 'alice', {code: await oathtool(secret, {now: '30 seconds ago'})}))
    expectDecision(r, true, 'code_accepted')
    expect(r.json.skewSteps).toBe(-1)
  })

  it("refuses the previous step's code with window 0", async () => {
    await enable(store, '--window', '0')
    const {secret} = await renew(store, 'alice')
    const r = await withinOneStep(30, async () => check(store, 'alice', {code: await oathtool(secret, {now: '30 seconds ago'})}))
    expectDecision(r, false, 'code_invalid')
  })

  it('omits skewSteps for a code of the current step', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const r = await withinOneStep(30, async () => check(store, 'alice', {code: await oathtool(secret)}))
    expectDecision(r, true, 'code_accepted')
    expect(r.json).not.toHaveProperty('skewSteps')
  })

  it('verifies users with different intervals and digits side by side', async () => {
    await enable(store)
    const users = [
      {user: 'alice', interval: 30, digits: 6},
      {user: 'bob', interval: 60, digits: 7},
      {user: 'carol', interval: 30, digits: 8},
    ]
    const secrets = new Map<string, string>()
    for (const {user, interval, digits} of users) {
      const enrolled = await renew(store, user, '--interval', String(interval), '--digits', String(digits))
      secrets.set(user, enrolled.secret)
    }
    for (const {user, interval, digits} of users) {
      const code = await oathtool(secrets.get(user)!, {interval, digits})
      expectDecision(await check(store, user, {code}), true, 'code_accepted')
    }
    const list = await store.run(['user:list', '--json'])
    expect(list.json.users).toEqual(
      expect.arrayContaining(users.map(({user, interval, digits}) => expect.objectContaining({user, configured: true, interval, digits}))),
    )
  })

  it("makes the old secret's codes fail and the new secret's codes pass after a renewal", async () => {
    await enable(store)
    const old = await renew(store, 'alice')
    const renewed = await renew(store, 'alice')
    expect(renewed.secret).not.toBe(old.secret)
    expectDecision(await check(store, 'alice', {code: await oathtool(old.secret)}), false, 'code_invalid')
    expectDecision(await check(store, 'alice', {code: await oathtool(renewed.secret)}), true, 'code_accepted')
  })
})
