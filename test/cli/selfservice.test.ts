// Acceptance 6: self-service under sudo, simulated with SUDO_USER while running as root.
// A user acting on their own active secret must prove it with --code; root acting directly,
// an admin acting on someone else and a first enrolment need no proof.
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {oathtool, tempStore} from '../helpers/cli.js'
import {check, enable, expectDecision, expectJsonError, renew, type TempStore} from './support.js'

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

const asSudo = (user: string) => ({env: {SUDO_USER: user}})

async function shownSecret(user: string): Promise<string | undefined> {
  const r = await store.run(['user:secret:show', user, '--qr', 'none', '--json'])
  return r.code === 0 ? r.json.secret : undefined
}

describe('self-service under sudo (SUDO_USER)', () => {
  it('refuses renewing or removing your own secret without --code (exit 4), leaving the store byte-identical', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const before = store.bytes()
    // The sudoers rule allows the commands without arguments: they act on SUDO_USER.
    const renewed = await store.run(['user:secret:renew', '--qr', 'none', '--json'], asSudo('alice'))
    expect(expectJsonError(renewed, 4)).toMatch(/--code/)
    expect(store.bytes()).toEqual(before)
    expectJsonError(await store.run(['user:secret:unset', '--yes', '--json'], asSudo('alice')), 4)
    expectJsonError(await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'], asSudo('alice')), 4)
    expect(store.bytes()).toEqual(before)
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
  })

  it('renews your own secret with a current code as --code', async () => {
    await enable(store)
    const {secret: old} = await renew(store, 'alice')
    const r = await store.run(['user:secret:renew', '--qr', 'none', '--code', await oathtool(old), '--json'], asSudo('alice'))
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users).toEqual([expect.objectContaining({user: 'alice', changed: true})])
    const fresh = r.json.users[0].secret
    expect(fresh).not.toBe(old)
    expect(await shownSecret('alice')).toBe(fresh)
    expectDecision(await check(store, 'alice', {code: await oathtool(fresh)}), true, 'code_accepted')
  })

  it('removes your own secret with a recovery code as --code', async () => {
    await enable(store)
    await renew(store, 'alice')
    const gen = await store.run(['user:recovery:generate', 'alice', '--count', '2', '--json'])
    expect(gen.code, gen.stderr).toBe(0)
    const r = await store.run(['user:secret:unset', '--yes', '--code', gen.json.codes[0], '--json'], asSudo('alice'))
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toEqual({user: 'alice', changed: true})
    expect(await shownSecret('alice')).toBeUndefined()
    expectDecision(await check(store, 'alice'), true, 'no_secret', true)
  })

  it('needs no code from root acting directly, nor from an admin under sudo acting on another user', async () => {
    await enable(store)
    const {secret: first} = await renew(store, 'alice')
    const byRoot = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])
    expect(byRoot.code, byRoot.stderr).toBe(0)
    expect(byRoot.json.users[0]).toMatchObject({user: 'alice', changed: true})
    expect(byRoot.json.users[0].secret).not.toBe(first)
    const byAdmin = await store.run(['user:secret:unset', 'alice', '--yes', '--json'], asSudo('bob'))
    expect(byAdmin.code, byAdmin.stderr).toBe(0)
    expect(byAdmin.json).toEqual({user: 'alice', changed: true})
  })

  it('needs no code for a first enrolment under sudo', async () => {
    await enable(store)
    const r = await store.run(['user:secret:renew', '--qr', 'none', '--json'], asSudo('carol'))
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users).toEqual([expect.objectContaining({user: 'carol', changed: true, pending: false})])
    expectDecision(await check(store, 'carol', {code: await oathtool(r.json.users[0].secret)}), true, 'code_accepted')
  })

  it('counts a wrong --code as a failed check toward the lockout and keeps the secret', async () => {
    await enable(store, '--max-failures', '2')
    const {secret} = await renew(store, 'alice')
    const wrong = [...(await oathtool(secret))].map((d) => String((Number(d) + 5) % 10)).join('')
    const r = await store.run(['user:secret:renew', '--qr', 'none', '--code', wrong, '--json'], asSudo('alice'))
    expectJsonError(r, 4)
    expect(await shownSecret('alice')).toBe(secret)
    // Failure 2 of 2: only a lockout if the refused proof counted as failure 1.
    expectDecision(await check(store, 'alice', {code: wrong}), false, 'code_invalid')
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), false, 'locked_out')
  })

  it('counts a wrong code confirming your own pending secret and refuses you once locked out (exit 4); root is neither counted nor refused', async () => {
    await enable(store, '--max-failures', '2')
    const {secret} = await renew(store, 'alice', '--pending') // provisioned by root
    const right = await oathtool(secret)
    const wrong = [...right].map((d) => String((Number(d) + 5) % 10)).join('')
    const alice = async () => (await store.run(['user:list', '--json'])).json.users.find((u: {user: string}) => u.user === 'alice')
    const confirm = (code: string, as?: string) =>
      as ? store.run(['user:secret:confirm', '--code', code, '--json'], asSudo(as)) : store.run(['user:secret:confirm', 'alice', '--code', code, '--json'])
    for (let i = 0; i < 3; i++) expectJsonError(await confirm(wrong), 1) // root: not counted
    expect(await alice()).toMatchObject({pending: true, lockedOut: false})
    for (let i = 0; i < 2; i++) expectJsonError(await confirm(wrong, 'alice'), 1) // counted: 2 of 2
    expect(await alice()).toMatchObject({pending: true, lockedOut: true})
    const before = store.bytes()
    expect(expectJsonError(await confirm(right, 'alice'), 4)).toMatch(/locked out.*user:unlock/)
    expect(store.bytes()).toEqual(before)
    const byRoot = await confirm(right)
    expect(byRoot.code, byRoot.stderr).toBe(0)
    expect(await alice()).toMatchObject({pending: false, lockedOut: false, configured: true})
  })

  it('refuses making your own recovery codes without --code (exit 4)', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const before = store.bytes()
    expectJsonError(await store.run(['user:recovery:generate', '--json'], asSudo('alice')), 4)
    expect(store.bytes()).toEqual(before)
    const r = await store.run(['user:recovery:generate', '--count', '1', '--code', await oathtool(secret), '--json'], asSudo('alice'))
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({user: 'alice', codes: [expect.stringMatching(/^[A-Z2-7]{5}-[A-Z2-7]{5}$/)]})
  })
})
