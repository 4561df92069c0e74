import {describe, expect, it} from 'vitest'
import {decideLogin} from '../../src/core/login.js'
import {DEFAULT_SETTINGS, newUserRecord, type UserRecord} from '../../src/core/model.js'
import {applyResync, findResync} from '../../src/core/resync.js'
import {hotp, timeStep} from '../../src/core/totp.js'

const KEY = Buffer.from('12345678901234567890', 'ascii')
const NOW = Date.UTC(2025, 0, 1, 0, 0, 15)
const STEP = timeStep(NOW, 30)
const code = (offset: number) => hotp(KEY, STEP + offset, 6)
const user = (over: Partial<UserRecord> = {}): UserRecord => ({
  ...newUserRecord(),
  secret: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ',
  createdAt: new Date(0).toISOString(),
  ...over,
})

describe('resync from two consecutive codes', () => {
  it.each([-2880, -721, -11, 0, 5, 400, 2880])('finds a token %i steps off the host clock', (offset) => {
    expect(findResync(user(), code(offset - 1), code(offset), NOW)).toEqual({drift: offset, step: STEP + offset})
  })

  it('finds nothing beyond a day, nor for codes in the wrong order', () => {
    expect(findResync(user(), code(2880), code(2881), NOW)).toEqual({refused: 'code_invalid'})
    expect(findResync(user(), code(5), code(4), NOW)).toEqual({refused: 'code_invalid'})
    expect(findResync(user(), code(4), 'abcdef', NOW)).toEqual({refused: 'code_invalid'})
  })

  it('refuses codes at or before the last accepted step (replay protection on absolute steps)', () => {
    expect(findResync(user({lastUsedStep: STEP + 100}), code(99), code(100), NOW)).toEqual({refused: 'code_replayed'})
    expect(findResync(user({lastUsedStep: STEP + 99}), code(99), code(100), NOW)).toEqual({refused: 'code_replayed'})
    expect(findResync(user({lastUsedStep: STEP + 98}), code(99), code(100), NOW)).toEqual({drift: 100, step: STEP + 100})
  })

  it("centres the user's window on the drift it stores, and both codes are used", () => {
    const u = user()
    const found = findResync(u, code(499), code(500), NOW)
    if (!('step' in found)) throw new Error('not found')
    applyResync(u, found, NOW)
    expect(u).toMatchObject({driftSteps: 500, lastUsedStep: STEP + 500})
    const cfg = {...DEFAULT_SETTINGS, enabled: true, window: 1}
    const later = NOW + 30_000
    expect(decideLogin(cfg, u, {service: 'ui', method: 'password', code: code(501), now: later}).reason).toBe('code_accepted')
    expect(decideLogin(cfg, u, {service: 'ui', method: 'password', code: code(500), now: later}).reason).toBe('code_replayed')
    expect(decideLogin(cfg, u, {service: 'ui', method: 'password', code: code(1), now: later}).reason).toBe('code_invalid')
  })
})
