// Every rule of login:check, through the real CLI: exit code (0 allowed, 1 denied) and
// the JSON decision. One row per rule, in the order the documentation lists them.
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {oathtool, tempStore} from '../helpers/cli.js'
import {check, enable, expectDecision, expectJsonError, renew, type TempStore, withinOneStep} from './support.js'

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

describe('login:check rules', () => {
  it('allows everyone while 2FA is off, with the documented JSON shape', async () => {
    const r = await check(store, 'alice')
    expectDecision(r, true, 'twofactor_disabled')
    expect(r.json).toEqual({user: 'alice', service: 'ui', method: 'password', allowed: true, reason: 'twofactor_disabled', setupPrompt: false})
    expectDecision(await check(store, 'alice', {service: 'ssh'}), true, 'twofactor_disabled')
  })

  it('allows a user who has a secret without a code while 2FA is off', async () => {
    await renew(store, 'alice')
    expectDecision(await check(store, 'alice'), true, 'twofactor_disabled')
    expectDecision(await check(store, 'alice', {code: '000000'}), true, 'twofactor_disabled')
  })

  it('allows SSH key logins without a code even when SSH 2FA is on', async () => {
    await enable(store, '--ssh')
    await renew(store, 'alice')
    const r = await check(store, 'alice', {service: 'ssh', method: 'key'})
    expectDecision(r, true, 'key_auth')
    expect(r.json).toMatchObject({service: 'ssh', method: 'key'})
  })

  it('allows SSH password logins without a code while SSH 2FA is off', async () => {
    await enable(store, '--no-ssh')
    await renew(store, 'alice')
    expectDecision(await check(store, 'alice', {service: 'ssh'}), true, 'ssh_2fa_off')
    expectDecision(await check(store, 'alice', {service: 'ssh', method: 'key'}), true, 'key_auth')
  })

  it('allows a user without a secret and prompts setup on the web UI only', async () => {
    await enable(store, '--ssh')
    expectDecision(await check(store, 'alice'), true, 'no_secret', true)
    expectDecision(await check(store, 'alice', {service: 'ssh'}), true, 'no_secret', false)
  })

  it('denies a web UI login without a secret in STIG mode (stig_requires_2fa)', async () => {
    await renew(store, 'root') // STIG mode needs an administrator with a secret
    await enable(store, '--stig')
    const r = await check(store, 'alice')
    expectDecision(r, false, 'stig_requires_2fa', false)
    expect(r.json).toMatchObject({allowed: false, setupPrompt: false})
    // SSH is not the web UI: the no-secret rule applies there unchanged.
    expectDecision(await check(store, 'alice', {service: 'ssh'}), true, 'no_secret', false)
    expectDecision(await check(store, 'alice', {service: 'ssh', method: 'key'}), true, 'key_auth')
  })

  it('asks for a code when the user has a secret and none was given', async () => {
    await enable(store, '--ssh')
    await renew(store, 'alice')
    expectDecision(await check(store, 'alice'), false, 'code_required')
    expectDecision(await check(store, 'alice', {service: 'ssh'}), false, 'code_required')
  })

  it('accepts a right code on the web UI and on SSH, and refuses each as replayed afterwards', async () => {
    await enable(store, '--ssh')
    const {secret} = await renew(store, 'alice')
    const {secret: bobSecret} = await renew(store, 'bob')
    const code = await oathtool(secret)
    expectDecision(await check(store, 'alice', {code}), true, 'code_accepted')
    expectDecision(await check(store, 'alice', {code}), false, 'code_replayed')
    const bobCode = await oathtool(bobSecret)
    expectDecision(await check(store, 'bob', {service: 'ssh', code: bobCode}), true, 'code_accepted')
    expectDecision(await check(store, 'bob', {service: 'ssh', code: bobCode}), false, 'code_replayed')
  })

  it('refuses a code from a step before the last accepted one as replayed', async () => {
    await enable(store, '--window', '1')
    const {secret} = await renew(store, 'alice')
    const [now, before] = await withinOneStep(30, async () => {
      const current = await check(store, 'alice', {code: await oathtool(secret)})
      const earlier = await check(store, 'alice', {code: await oathtool(secret, {now: '30 seconds ago'})})
      return [current, earlier]
    })
    expectDecision(now, true, 'code_accepted')
    expectDecision(before, false, 'code_replayed')
  })

  it('accepts a code typed with spaces', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const code = await oathtool(secret)
    expectDecision(await check(store, 'alice', {code: `${code.slice(0, 3)} ${code.slice(3)}`}), true, 'code_accepted')
  })

  it('refuses codes that are not digits of the right length as code_invalid', async () => {
    await enable(store)
    await renew(store, 'alice')
    await renew(store, 'bob', '--digits', '8')
    // Four at most per user: the default lockout starts at five failures.
    for (const code of ['abcdef', '12345', '1234567', '12a456']) expectDecision(await check(store, 'alice', {code}), false, 'code_invalid')
    for (const code of ['12-456', '123456', '12.45678', '123456789']) expectDecision(await check(store, 'bob', {code}), false, 'code_invalid')
  })

  // An explicitly given code is judged, even when empty: it is not the same as no code.
  it('refuses an explicitly empty or blank code as code_invalid', async () => {
    await enable(store)
    await renew(store, 'alice')
    expectDecision(await check(store, 'alice', {code: ''}), false, 'code_invalid')
    expectDecision(await check(store, 'alice', {code: '   '}), false, 'code_invalid')
  })

  it('refuses a right code of the wrong user', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    await renew(store, 'bob')
    expectDecision(await check(store, 'bob', {code: await oathtool(secret)}), false, 'code_invalid')
  })

  it('rejects --method key for the web UI as invalid usage (exit 2)', async () => {
    await enable(store)
    expectJsonError(await check(store, 'alice', {service: 'ui', method: 'key'}), 2)
    expectJsonError(await check(store, 'alice', {method: 'key'}), 2)
  })

  it('sets setupPrompt exactly when 2FA is on, the user has no secret, the service is ui and STIG is off', async () => {
    const prompts = async () => {
      const ui = await check(store, 'nobody')
      const ssh = await check(store, 'nobody', {service: 'ssh'})
      return [ui.json.setupPrompt, ssh.json.setupPrompt]
    }
    expect(await prompts(), '2FA off').toEqual([false, false])
    await enable(store, '--ssh')
    expect(await prompts(), '2FA on').toEqual([true, false])
    await renew(store, 'root') // STIG mode needs an administrator with a secret
    await enable(store, '--stig')
    expect(await prompts(), 'STIG').toEqual([false, false])
    await enable(store, '--no-stig')
    expect(await prompts(), 'STIG left').toEqual([true, false])
    const {secret} = await renew(store, 'nobody')
    const withSecret = await check(store, 'nobody', {code: await oathtool(secret)})
    expectDecision(withSecret, true, 'code_accepted', false)
  })
})
