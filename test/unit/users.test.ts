import {describe, expect, it} from 'vitest'
import {hashCodes, oneTimeCode} from '../../src/core/codes.js'
import {type Enrolment, emptyDoc, newUserRecord, type UserRecord} from '../../src/core/model.js'
import {checkSelfService} from '../../src/core/selfservice.js'
import {hotp, timeStep} from '../../src/core/totp.js'
import {activate, configuredCount, enrolmentOf, getOrCreate, removeSecret} from '../../src/core/users.js'

// The RFC 4226/6238 SHA1 key "12345678901234567890", in base32 as the store keeps it.
const KEY = Buffer.from('12345678901234567890', 'ascii')
const SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'
const NOW = Date.UTC(2025, 0, 1, 0, 0, 15)
const enrolment = (over: Partial<Enrolment> = {}): Enrolment => ({
  secret: SECRET,
  interval: 30,
  digits: 6,
  algorithm: 'SHA1',
  createdAt: new Date(NOW).toISOString(),
  ...over,
})
const bypass = () => ({salt: 'c2FsdA==', hash: 'aGFzaA==', expiresAt: new Date(NOW + 60_000).toISOString()})

function docWith(user: string, record: Partial<UserRecord>) {
  const doc = emptyDoc()
  doc.users.set(user, {...newUserRecord(), ...record})
  return doc
}

describe('activate', () => {
  it('makes the enrolment the active secret', () => {
    const doc = emptyDoc()
    const e = enrolment({digits: 8, interval: 60})
    activate(doc, 'alice', e)
    expect(enrolmentOf(doc.users.get('alice')!)).toEqual(e)
  })

  it('resets replay state, failures, lockout, recovery codes and the pending secret', () => {
    const doc = docWith('alice', {
      secret: 'OLDSECRETOLDSECRET',
      createdAt: new Date(0).toISOString(),
      lastUsedStep: 123,
      failures: 4,
      lockedUntil: new Date(NOW + 60_000).toISOString(),
      recovery: hashCodes([oneTimeCode(2)]),
      pending: enrolment({secret: 'PENDINGPENDINGPE'}),
    })
    activate(doc, 'alice', enrolment())
    const r = doc.users.get('alice')!
    expect(r.secret).toBe(SECRET)
    expect(r.lastUsedStep).toBeNull()
    expect(r.failures).toBe(0)
    expect(r.lockedUntil).toBeNull()
    expect(r.recovery).toBeNull()
    expect(r.pending).toBeNull()
  })

  it('leaves other users alone', () => {
    const doc = docWith('bob', {failures: 2})
    activate(doc, 'alice', enrolment())
    expect(doc.users.get('bob')!.failures).toBe(2)
    expect(configuredCount(doc)).toBe(1)
  })
})

describe('removeSecret', () => {
  it('returns false for an unknown user', () => {
    const doc = emptyDoc()
    expect(removeSecret(doc, 'alice')).toBe(false)
    expect(doc.users.size).toBe(0)
  })

  it('returns false and changes nothing for a user with only a lockout or bypass', () => {
    const record = {failures: 5, lockedUntil: new Date(NOW + 60_000).toISOString(), bypass: bypass()}
    const doc = docWith('alice', record)
    const before = structuredClone(doc.users.get('alice'))
    expect(removeSecret(doc, 'alice')).toBe(false)
    expect(doc.users.get('alice')).toEqual(before)
  })

  it('removes the secret and drops the then-empty record', () => {
    const doc = emptyDoc()
    activate(doc, 'alice', enrolment())
    expect(removeSecret(doc, 'alice')).toBe(true)
    expect(doc.users.has('alice')).toBe(false)
    expect(configuredCount(doc)).toBe(0)
  })

  it('removes a pending secret and recovery codes too', () => {
    const doc = docWith('alice', {pending: enrolment(), recovery: hashCodes([oneTimeCode(2)])})
    expect(removeSecret(doc, 'alice')).toBe(true)
    expect(doc.users.has('alice')).toBe(false)
  })

  it('keeps a bypass code', () => {
    const b = bypass()
    const doc = docWith('alice', {...enrolment(), bypass: b})
    expect(removeSecret(doc, 'alice')).toBe(true)
    expect(doc.users.get('alice')?.secret).toBeNull()
    expect(doc.users.get('alice')?.bypass).toEqual(b)
  })

  it('returns false the second time', () => {
    const doc = emptyDoc()
    activate(doc, 'alice', enrolment())
    removeSecret(doc, 'alice')
    expect(removeSecret(doc, 'alice')).toBe(false)
  })
})

describe('users map', () => {
  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty'])('keeps %s as an ordinary user', (name) => {
    const doc = emptyDoc()
    expect(doc.users.get(name)).toBeUndefined()
    const record = getOrCreate(doc, name)
    activate(doc, name, enrolment())
    expect(doc.users.get(name)).toBe(record)
    expect(record.secret).toBe(SECRET)
    expect([...doc.users.keys()]).toEqual([name])
    expect(configuredCount(doc)).toBe(1)
    expect(Object.getPrototypeOf(doc.users)).toBe(Map.prototype)
    expect((Object.prototype as Record<string, unknown>).secret).toBeUndefined()
    expect(removeSecret(doc, name)).toBe(true)
    expect(doc.users.size).toBe(0)
  })

  it('getOrCreate returns the existing record rather than a new one', () => {
    const doc = emptyDoc()
    const first = getOrCreate(doc, 'alice')
    first.failures = 1
    expect(getOrCreate(doc, 'alice')).toBe(first)
  })
})

describe('checkSelfService', () => {
  const codeAt = (now: number, offset = 0) => hotp(KEY, timeStep(now, 30) + offset, 6)
  function enrolledDoc() {
    const doc = emptyDoc()
    doc.settings = {...doc.settings, enabled: true, window: 1}
    activate(doc, 'alice', enrolment())
    return doc
  }

  it('asks no proof when not under sudo (no SUDO_USER)', () => {
    expect(checkSelfService(enrolledDoc(), 'alice', undefined, undefined, NOW)).toBeUndefined()
  })

  it('asks no proof when acting on another user', () => {
    expect(checkSelfService(enrolledDoc(), 'alice', 'bob', undefined, NOW)).toBeUndefined()
  })

  it('asks no proof for a first enrolment', () => {
    expect(checkSelfService(emptyDoc(), 'alice', 'alice', undefined, NOW)).toBeUndefined()
    expect(checkSelfService(docWith('alice', {pending: enrolment()}), 'alice', 'alice', undefined, NOW)).toBeUndefined()
  })

  it('asks for --code when the user has a secret and gave no code', () => {
    const doc = enrolledDoc()
    const message = checkSelfService(doc, 'alice', 'alice', undefined, NOW)
    expect(message).toContain('--code')
    expect(doc.users.get('alice')!.failures).toBe(0)
  })

  it('refuses a wrong code and counts the failure', () => {
    const doc = enrolledDoc()
    const valid = new Set([codeAt(NOW, -1), codeAt(NOW), codeAt(NOW, 1)])
    const wrong = ['000000', '111111', '222222'].find((c) => !valid.has(c))!
    const message = checkSelfService(doc, 'alice', 'alice', wrong, NOW)
    expect(message).toBeTypeOf('string')
    expect(message).toContain('refused')
    expect(doc.users.get('alice')!.failures).toBe(1)
    expect(doc.users.get('alice')!.secret).toBe(SECRET)
  })

  it('accepts the right code and records it against replay', () => {
    const doc = enrolledDoc()
    expect(checkSelfService(doc, 'alice', 'alice', codeAt(NOW), NOW)).toBeUndefined()
    expect(doc.users.get('alice')!.lastUsedStep).toBe(timeStep(NOW, 30))
    expect(checkSelfService(doc, 'alice', 'alice', codeAt(NOW), NOW + 1_000)).toContain('code_replayed')
  })

  it('accepts a recovery code and uses it up', () => {
    const doc = enrolledDoc()
    const code = oneTimeCode(2)
    doc.users.get('alice')!.recovery = hashCodes([code])
    expect(checkSelfService(doc, 'alice', 'alice', code.toLowerCase(), NOW)).toBeUndefined()
    expect(doc.users.get('alice')!.recovery!.hashes).toHaveLength(0)
  })

  it('refuses even the right code while the user is locked out', () => {
    const doc = enrolledDoc()
    doc.users.get('alice')!.lockedUntil = new Date(NOW + 60_000).toISOString()
    expect(checkSelfService(doc, 'alice', 'alice', codeAt(NOW), NOW)).toContain('locked_out')
  })
})
