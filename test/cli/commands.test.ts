// The administration commands through the real CLI: settings, the emergency switch, STIG,
// enrolment output, the store's files, odd-but-valid usernames, and help.
import {existsSync, statSync} from 'node:fs'
import {hostname} from 'node:os'
import {dirname, join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {oathtool, tempStore, tfactl} from '../helpers/cli.js'
import {check, enable, expectDecision, expectJsonError, renew, type TempStore} from './support.js'

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

const status = async () => {
  const r = await store.run(['twofactor:status', '--json'])
  expect(r.code, r.stderr).toBe(0)
  return r.json
}

describe('twofactor:enable', () => {
  it('is idempotent: a second identical run reports changed false', async () => {
    const first = await enable(store)
    expect(first).toMatchObject({enabled: true, window: 1, ssh: false, stig: false, changed: true})
    expect(first.issuer).toBeTypeOf('string')
    const second = await enable(store)
    expect(second).toEqual({...first, changed: false})
    // Giving the current values explicitly is no change either.
    expect(await enable(store, '--window', '1', '--no-ssh', '--no-stig')).toMatchObject({changed: false})
  })

  it('keeps stdout one JSON document even when it warns about the clock', async () => {
    const r = await store.run(['twofactor:enable', '--fail-delay', '0', '--json'])
    expect(r.code).toBe(0)
    expect(r.json).toMatchObject({enabled: true})
    expect(r.stdout).not.toMatch(/warning/i)
  })

  it('accepts an issuer of 64 characters, the longest allowed', async () => {
    expect(await enable(store, '--issuer', 'é'.repeat(64))).toMatchObject({issuer: 'é'.repeat(64)})
  })

  it('changes only the settings given', async () => {
    await enable(store, '--ssh', '--issuer', 'NAS office')
    expect(await enable(store, '--window', '3')).toMatchObject({window: 3, ssh: true, stig: false, issuer: 'NAS office', changed: true})
    expect(await enable(store, '--no-ssh')).toMatchObject({window: 3, ssh: false, issuer: 'NAS office', changed: true})
    expect(await enable(store, '--issuer', 'Backup')).toMatchObject({window: 3, ssh: false, issuer: 'Backup', changed: true})
    expect(await status()).toMatchObject({enabled: true, window: 3, ssh: false, stig: false, issuer: 'Backup'})
  })

  it('accepts window 0 and 10, the ends of the range', async () => {
    expect(await enable(store, '--window', '0')).toMatchObject({window: 0})
    expect(await enable(store, '--window', '10')).toMatchObject({window: 10})
  })

  it('creates the store on first write with directory 0700 and file 0600', async () => {
    expect(existsSync(store.path)).toBe(false)
    await enable(store)
    expect(statSync(store.path).mode & 0o777).toBe(0o600)
    expect(statSync(dirname(store.path)).mode & 0o777).toBe(0o700)
  })
})

describe('a missing store', () => {
  it('reads as the defaults (2FA off) and is not created by reading', async () => {
    expect(await status()).toMatchObject({enabled: false, window: 1, ssh: false, stig: false, users: {total: 0, configured: 0}})
    const list = await store.run(['user:list', '--json'])
    expect(list.code).toBe(0)
    expect(list.json).toEqual({users: []})
    expect(existsSync(store.path)).toBe(false)
  })

  it('is created 0700/0600 by a first renewal too', async () => {
    await renew(store, 'alice')
    expect(statSync(store.path).mode & 0o777).toBe(0o600)
    expect(statSync(dirname(store.path)).mode & 0o777).toBe(0o700)
  })
})

describe('twofactor:disable', () => {
  it('turns 2FA off keeping secrets, and re-enabling restores them', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')

    const off = await store.run(['twofactor:disable', '--json'])
    expect(off.code, off.stderr).toBe(0)
    expect(off.json).toEqual({enabled: false, changed: true})
    const again = await store.run(['twofactor:disable', '--json'])
    expect(again.json).toEqual({enabled: false, changed: false})
    expect(await status()).toMatchObject({enabled: false, users: {configured: 1}})
    expectDecision(await check(store, 'alice'), true, 'twofactor_disabled')

    await enable(store)
    expectDecision(await check(store, 'alice'), false, 'code_required')
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
  })
})

describe('STIG mode', () => {
  it('turns SSH 2FA on and refuses to turn 2FA or SSH 2FA off (exit 4), changing nothing', async () => {
    await renew(store, 'root') // STIG mode needs an administrator with a secret
    expect(await enable(store, '--stig')).toMatchObject({enabled: true, stig: true, ssh: true})
    const before = store.bytes()
    expectJsonError(await store.run(['twofactor:disable', '--json']), 4)
    expectJsonError(await store.run(['twofactor:enable', '--no-ssh', '--json']), 4)
    expect(store.bytes()).toEqual(before)
    expect(await status()).toMatchObject({enabled: true, stig: true, ssh: true})
  })

  it('refuses --stig together with --no-ssh (exit 4) and changes nothing', async () => {
    await enable(store)
    const before = store.bytes()
    expectJsonError(await store.run(['twofactor:enable', '--stig', '--no-ssh', '--json']), 4)
    expect(store.bytes()).toEqual(before)
  })

  it('--no-stig leaves STIG mode and keeps SSH 2FA on; then disable works', async () => {
    await renew(store, 'root') // STIG mode needs an administrator with a secret
    await enable(store, '--stig')
    expect(await enable(store, '--no-stig')).toMatchObject({enabled: true, stig: false, ssh: true, changed: true})
    const off = await store.run(['twofactor:disable', '--json'])
    expect(off.code, off.stderr).toBe(0)
    expect(off.json).toEqual({enabled: false, changed: true})
  })
})

describe('twofactor:status', () => {
  it('counts known users and users with a secret', async () => {
    await enable(store)
    await renew(store, 'alice')
    await renew(store, 'bob')
    expect(await status()).toMatchObject({enabled: true, users: {total: 2, configured: 2}})
    const unset = await store.run(['user:secret:unset', 'alice', '--yes', '--json'])
    expect(unset.code, unset.stderr).toBe(0)
    const after = await status()
    expect(after.users.configured).toBe(1)
    expect(after.users.total).toBeGreaterThanOrEqual(1)
  })
})

describe('user:secret:renew', () => {
  it('stores a 32-character base32 secret and returns the documented JSON, whether 2FA is on or off', async () => {
    const r = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const [entry] = r.json.users
    expect(entry).toMatchObject({user: 'alice', interval: 30, digits: 6, algorithm: 'SHA1', changed: true})
    expect(entry.secret).toMatch(/^[A-Z2-7]{32}$/)
    const label = `${encodeURIComponent('tfactl')}:${encodeURIComponent(`alice@${hostname()}`)}`
    expect(decodeURIComponent(entry.uri)).toBe(decodeURIComponent(`otpauth://totp/${label}?secret=${entry.secret}&issuer=tfactl`))
    expect(entry.uri).not.toContain('digits=')
    expect(entry.uri).not.toContain('period=')
    expect(await status()).toMatchObject({enabled: false, users: {configured: 1}})
  })

  it('puts digits and period into the URI only when they are not 6 and 30', async () => {
    const {uri} = await renew(store, 'alice', '--interval', '60', '--digits', '8')
    const params = new URL(uri).searchParams
    expect(params.get('digits')).toBe('8')
    expect(params.get('period')).toBe('60')
    const seven = await renew(store, 'bob', '--digits', '7')
    expect(new URL(seven.uri).searchParams.get('digits')).toBe('7')
    expect(new URL(seven.uri).searchParams.has('period')).toBe(false)
  })

  it('URL-encodes the issuer in the label and the parameter', async () => {
    await enable(store, '--issuer', 'NAS office & co')
    const {uri} = await renew(store, 'alice')
    expect(uri.startsWith(`otpauth://totp/${encodeURIComponent('NAS office & co')}:`)).toBe(true)
    expect(new URL(uri).searchParams.get('issuer')).toBe('NAS office & co')
  })

  it('warns on stderr that Google Authenticator needs 30 s for --interval 60, and not for 30', async () => {
    const sixty = await store.run(['user:secret:renew', 'alice', '--interval', '60', '--qr', 'none'])
    expect(sixty.code, sixty.stderr).toBe(0)
    expect(sixty.stderr).toMatch(/Google Authenticator/)
    expect(sixty.stdout).not.toMatch(/Google Authenticator/)
    const thirty = await store.run(['user:secret:renew', 'bob', '--qr', 'none'])
    expect(thirty.stderr).not.toMatch(/Google Authenticator/)
  })

  it('stores nothing for an unsupported interval or digits', async () => {
    expectJsonError(await store.run(['user:secret:renew', 'alice', '--interval', '45', '--json']), 2)
    expectJsonError(await store.run(['user:secret:renew', 'alice', '--digits', '5', '--json']), 2)
    expect(existsSync(store.path)).toBe(false)
  })
})

describe('user:secret:show', () => {
  it('shows the renewed secret again, like renew without changed', async () => {
    const enrolled = await renew(store, 'alice', '--digits', '8')
    const r = await store.run(['user:secret:show', 'alice', '--qr', 'none', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const {changed, pending, ...view} = enrolled
    expect(r.json).toMatchObject(view)
    expect(r.json).not.toHaveProperty('changed')
  })

  it('exits 2 for a user without a secret', async () => {
    expectJsonError(await store.run(['user:secret:show', 'alice', '--json']), 2)
    await renew(store, 'bob')
    expectJsonError(await store.run(['user:secret:show', 'alice', '--json']), 2)
  })
})

describe('user:secret:unset', () => {
  it('without --yes and without a terminal exits 2 naming --yes and keeps the secret', async () => {
    await renew(store, 'alice')
    const before = store.bytes()
    const r = await store.run(['user:secret:unset', 'alice'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--yes')
    expect(store.bytes()).toEqual(before)
  })

  it('with --yes reports changed true, then false', async () => {
    await enable(store)
    await renew(store, 'alice')
    const first = await store.run(['user:secret:unset', 'alice', '--yes', '--json'])
    expect(first.code, first.stderr).toBe(0)
    expect(first.json).toEqual({user: 'alice', changed: true})
    const second = await store.run(['user:secret:unset', 'alice', '--yes', '--json'])
    expect(second.code, second.stderr).toBe(0)
    expect(second.json).toEqual({user: 'alice', changed: false})
    expectDecision(await check(store, 'alice'), true, 'no_secret', true)
  })
})

describe('user:list', () => {
  it('lists users with configured, interval, digits and lastUsedAt', async () => {
    await enable(store)
    const {secret} = await renew(store, 'alice')
    await renew(store, 'bob', '--interval', '60', '--digits', '7')
    const before = await store.run(['user:list', '--json'])
    expect(before.code, before.stderr).toBe(0)
    const byName = (json: any) => Object.fromEntries(json.users.map((u: any) => [u.user, u]))
    expect(byName(before.json)).toMatchObject({
      alice: {user: 'alice', configured: true, interval: 30, digits: 6, lastUsedAt: null},
      bob: {user: 'bob', configured: true, interval: 60, digits: 7, lastUsedAt: null},
    })

    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
    const after = byName((await store.run(['user:list', '--json'])).json)
    expect(Number.isNaN(Date.parse(after.alice.lastUsedAt))).toBe(false)
    expect(Math.abs(Date.parse(after.alice.lastUsedAt) - Date.now())).toBeLessThan(60_000)
    expect(after.bob.lastUsedAt).toBeNull()
  })
})

describe('valid usernames', () => {
  it('accepts 32 characters and names starting with a dot or underscore or holding a dash', async () => {
    for (const user of ['a'.repeat(32), '.hidden', '_svc', 'a.b_c-D9']) expect(await renew(store, user)).toMatchObject({user, changed: true})
  })
})

describe('usernames that are JavaScript property names', () => {
  for (const user of ['__proto__', 'constructor']) {
    it(`enrols, lists and checks ${user} like any other user`, async () => {
      await enable(store)
      expectDecision(await check(store, user), true, 'no_secret', true)
      const {secret} = await renew(store, user)
      const list = await store.run(['user:list', '--json'])
      expect(list.json.users).toEqual([expect.objectContaining({user, configured: true})])
      expect(await status()).toMatchObject({users: {total: 1, configured: 1}})
      expectDecision(await check(store, user), false, 'code_required')
      expectDecision(await check(store, user, {code: await oathtool(secret)}), true, 'code_accepted')
      const shown = await store.run(['user:secret:show', user, '--qr', 'none', '--json'])
      expect(shown.json).toMatchObject({user, secret})
      expectDecision(await check(store, 'alice'), true, 'no_secret', true)
    })
  }
})

describe('TFACTL_STORE', () => {
  it('selects the store when --store is not given', async () => {
    const env = {TFACTL_STORE: store.path}
    const on = await tfactl(['twofactor:enable', '--fail-delay', '0', '--window', '4', '--json'], {env})
    expect(on.code, on.stderr).toBe(0)
    expect(existsSync(store.path)).toBe(true)
    expect(await status()).toMatchObject({enabled: true, window: 4})
    const listed = await tfactl(['user:list', '--json'], {env})
    expect(listed.json).toEqual({users: []})
  })

  it('is overridden by --store', async () => {
    const other = join(store.dir, 'other', 'store.json')
    const r = await tfactl(['twofactor:enable', '--store', other, '--json'], {env: {TFACTL_STORE: store.path}})
    expect(r.code, r.stderr).toBe(0)
    expect(existsSync(other)).toBe(true)
    expect(existsSync(store.path)).toBe(false)
  })
})

describe('--help', () => {
  const COMMANDS = [
    'twofactor:enable',
    'twofactor:disable',
    'twofactor:status',
    'user:secret:renew',
    'user:secret:unset',
    'user:secret:show',
    'user:secret:confirm',
    'user:list',
    'login:check',
  ]
  it('of every command shows at least one example', async () => {
    const runs = await Promise.all(COMMANDS.map((cmd) => tfactl([cmd, '--help'])))
    for (const [i, r] of runs.entries()) {
      expect(r.code, COMMANDS[i]).toBe(0)
      expect(r.stdout, COMMANDS[i]).toMatch(/^EXAMPLES$/m)
      expect(r.stdout, COMMANDS[i]).toContain(`tfactl ${COMMANDS[i]}`)
      expect(r.stdout.slice(r.stdout.indexOf('EXAMPLES')), COMMANDS[i]).toMatch(new RegExp(`tfactl ${COMMANDS[i]}`))
    }
  })
})
