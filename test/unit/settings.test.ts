import {describe, expect, it} from 'vitest'
import {EXIT} from '../../src/core/errors.js'
import {DEFAULT_SETTINGS, type Settings} from '../../src/core/model.js'
import {disableSettings, enableSettings} from '../../src/core/settings.js'
import {thrown} from '../helpers/errors.js'

const current: Settings = {...DEFAULT_SETTINGS, window: 2, issuer: 'ACME', maxFailures: 7, lockout: 120, failDelay: 0, oathFile: '/etc/users.oath'}

describe('enableSettings', () => {
  it('turns 2FA on and keeps every other setting when nothing is given', () => {
    expect(enableSettings(current, {})).toEqual({...current, enabled: true})
  })

  it('changes only the fields given', () => {
    expect(enableSettings(current, {window: 0, issuer: 'NAS'})).toEqual({...current, enabled: true, window: 0, issuer: 'NAS'})
  })

  it('ignores fields given as undefined', () => {
    expect(enableSettings(current, {window: undefined, ssh: undefined, issuer: undefined})).toEqual({...current, enabled: true})
  })

  it('can clear oathFile with null', () => {
    expect(enableSettings(current, {oathFile: null}).oathFile).toBeNull()
  })

  it('does not modify the settings it is given', () => {
    const before = structuredClone(current)
    enableSettings(current, {window: 5, stig: true})
    expect(current).toEqual(before)
  })

  it('turns SSH 2FA on when STIG mode is turned on', () => {
    const next = enableSettings({...current, ssh: false}, {stig: true})
    expect(next.stig).toBe(true)
    expect(next.ssh).toBe(true)
  })

  it('keeps SSH 2FA on while STIG mode stays on', () => {
    expect(enableSettings({...current, stig: true, ssh: true}, {window: 3}).ssh).toBe(true)
  })

  it('refuses --stig with SSH 2FA off as forbidden (exit 4)', () => {
    const error = thrown(() => enableSettings(current, {stig: true, ssh: false}))
    expect(error.exit).toBe(EXIT.forbidden)
    expect(error.exit).toBe(4)
  })

  it('refuses turning SSH 2FA off while already in STIG mode (exit 4)', () => {
    expect(thrown(() => enableSettings({...current, stig: true, ssh: true}, {ssh: false})).exit).toBe(4)
  })

  it('allows leaving STIG mode and turning SSH 2FA off together', () => {
    const next = enableSettings({...current, stig: true, ssh: true}, {stig: false, ssh: false})
    expect(next).toEqual({...current, enabled: true, stig: false, ssh: false})
  })
})

describe('disableSettings', () => {
  it('turns 2FA off and keeps everything else', () => {
    const on = {...current, enabled: true, ssh: true}
    expect(disableSettings(on)).toEqual({...on, enabled: false})
  })

  it('refuses in STIG mode as forbidden (exit 4)', () => {
    const error = thrown(() => disableSettings({...current, enabled: true, ssh: true, stig: true}))
    expect(error.exit).toBe(EXIT.forbidden)
    expect(error.message).toMatch(/STIG/)
  })
})
