import {describe, expect, it} from 'vitest'
import {base32Encode} from '../../src/core/base32.js'
import {TfaError} from '../../src/core/errors.js'
import {type Doc, emptyDoc, newUserRecord, type UserRecord} from '../../src/core/model.js'
import {
  checkOathPath,
  compareUsersFile,
  findPamOath,
  formatOathTime,
  importReplay,
  OATH_HEADER,
  oathUsers,
  pamOathLine,
  parseOathTime,
  parseUsersFile,
  recordedStep,
  renderUsersFile,
  typeInterval,
} from '../../src/core/oath.js'
import {hotp} from '../../src/core/totp.js'

// RFC 4226's key, as the store keeps it (base32) and as pam_oath wants it (hex).
const KEY = Buffer.from('12345678901234567890', 'ascii')
const SECRET = base32Encode(KEY)
const HEX = KEY.toString('hex')
const OTHER = Buffer.from('abcdefghijabcdefghij', 'ascii')

const NOW = Date.UTC(2026, 10, 27, 12, 0, 10) // 10 s into a 30 s step
const STEP = Math.floor(NOW / 30_000)
const code = (step: number, key = KEY, digits = 6) => hotp(key, step, digits)

function doc(users: Record<string, Partial<UserRecord>>, settings: Partial<Doc['settings']> = {}): Doc {
  const d = emptyDoc()
  Object.assign(d.settings, {enabled: true, ssh: true, window: 1, oathFile: '/etc/users.oath'}, settings)
  for (const [name, r] of Object.entries(users)) d.users.set(name, {...newUserRecord(), secret: SECRET, createdAt: new Date(NOW).toISOString(), ...r})
  return d
}

const line = (user: string, ...rest: string[]) => ['HOTP/T30/6', user, '-', HEX, ...rest].join('\t')

describe('parseUsersFile', () => {
  it('reads lines as pam_oath does: any run of spaces or tabs, CRLF, optional trailing fields', () => {
    const entries = parseUsersFile(`# comment\n\nHOTP/T30/6  alice -\t${HEX}\r\nHOTP/T60/8\tbob\t-\t${HEX}\t3\t12345678\t2026-11-27T12:00:00L\n`)
    expect(entries).toEqual([
      {line: 3, type: 'HOTP/T30/6', user: 'alice', passwd: '-', secret: HEX, counter: undefined, lastOtp: undefined, time: undefined},
      {line: 4, type: 'HOTP/T60/8', user: 'bob', passwd: '-', secret: HEX, counter: '3', lastOtp: '12345678', time: '2026-11-27T12:00:00L'},
    ])
  })

  it('skips lines whose first field is not a type liboath knows', () => {
    const text = ['totp alice - 00', 'HOTP/T45 bob - 00', 'HOTP/T30/9 carol - 00', 'hotp dave - 00', 'HOTP/E/7 erin - 00', 'HOTP frank - 00'].join('\n')
    expect(parseUsersFile(text).map((e) => e.user)).toEqual(['erin', 'frank'])
  })

  it('tells the step length of a type', () => {
    expect([typeInterval('HOTP/T30/6'), typeInterval('HOTP/T60'), typeInterval('HOTP/E/8')]).toEqual([30, 60, undefined])
  })
})

describe('oathUsers', () => {
  it('lists users with a secret, sorted, only while 2FA and SSH 2FA are on', () => {
    const d = doc({carol: {interval: 60, digits: 8}, alice: {}, bob: {secret: null}})
    expect(oathUsers(d).map((u) => [u.user, u.type, u.hex])).toEqual([
      ['alice', 'HOTP/T30/6', HEX],
      ['carol', 'HOTP/T60/8', HEX],
    ])
    expect(oathUsers(doc({alice: {}}, {ssh: false}))).toEqual([])
    expect(oathUsers(doc({alice: {}}, {enabled: false}))).toEqual([])
  })

  it('refuses (exit 2) users pam_oath cannot check instead of leaving them out', () => {
    const d = doc({alice: {algorithm: 'SHA256'}, bob: {secret: base32Encode(Buffer.alloc(40, 7))}, carol: {}})
    let error: unknown
    try {
      oathUsers(d)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(TfaError)
    expect((error as TfaError).exit).toBe(2)
    expect((error as TfaError).code).toBe('oath_unsupported')
    expect((error as TfaError).message).toMatch(/alice uses SHA256/)
    expect((error as TfaError).message).toMatch(/bob's secret has 40 bytes/)
  })

  it('accepts a 32-byte secret, the most pam_oath takes', () => {
    expect(oathUsers(doc({alice: {secret: base32Encode(Buffer.alloc(32, 1))}}))).toHaveLength(1)
  })

  it('needs no check for inexpressible users while SSH 2FA is off', () => {
    expect(oathUsers(doc({alice: {algorithm: 'SHA512'}}, {ssh: false}))).toEqual([])
  })
})

describe('pam_oath time field', () => {
  it('is local time with a literal L and reads back', () => {
    const text = formatOathTime(NOW)
    expect(text).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dL$/)
    expect(parseOathTime(text)?.local).toBe(Math.floor(NOW / 1000) * 1000)
  })

  it('rejects anything else', () => {
    for (const bad of [undefined, '', '2026-11-27T12:00:00', '2026-11-27 12:00:00L', '2026-11-27T12:00:00Lx']) expect(parseOathTime(bad)).toBeUndefined()
  })
})

describe('recordedStep', () => {
  it('finds the step of the recorded code around the recorded time', () => {
    const then = NOW - 3600_000
    const step = Math.floor(then / 30_000) + 1
    expect(recordedStep(KEY, 30, code(step), formatOathTime(then), NOW, 1)).toBe(step)
  })

  it('finds a recent code around now when the time field is missing or unreadable', () => {
    expect(recordedStep(KEY, 30, code(STEP - 1), undefined, NOW, 1)).toBe(STEP - 1)
    expect(recordedStep(KEY, 30, code(STEP + 1), 'garbage', NOW, 1)).toBe(STEP + 1)
  })

  it('reads the time as UTC too (tfactl in another time zone than sshd)', () => {
    const then = NOW - 86_400_000
    const t = new Date(then)
    const utcText = `${t.getUTCFullYear()}-${String(t.getUTCMonth() + 1).padStart(2, '0')}-${String(t.getUTCDate()).padStart(2, '0')}T${String(t.getUTCHours()).padStart(2, '0')}:${String(t.getUTCMinutes()).padStart(2, '0')}:${String(t.getUTCSeconds()).padStart(2, '0')}L`
    expect(recordedStep(KEY, 30, code(Math.floor(then / 30_000)), utcText, NOW, 1)).toBe(Math.floor(then / 30_000))
  })

  it('gives up on codes it cannot place, or that are not codes', () => {
    expect(recordedStep(KEY, 30, code(STEP - 500), undefined, NOW, 1)).toBeUndefined()
    expect(recordedStep(KEY, 30, 'abcdef', undefined, NOW, 1)).toBeUndefined()
    expect(recordedStep(KEY, 30, undefined, undefined, NOW, 1)).toBeUndefined()
  })

  it('never places a code in the future beyond any window', () => {
    expect(recordedStep(KEY, 30, code(STEP + 20), formatOathTime(NOW + 600_000), NOW, 1)).toBeUndefined()
  })
})

describe('importReplay', () => {
  it("moves the store's last accepted step forward to the code pam_oath recorded", () => {
    const d = doc({alice: {lastUsedStep: STEP - 5}})
    const changed = importReplay(d, parseUsersFile(line('alice', '1', code(STEP), formatOathTime(NOW))), NOW)
    expect(changed).toEqual(['alice'])
    expect(d.users.get('alice')!.lastUsedStep).toBe(STEP)
    expect(d.users.get('alice')!.lastUsedAt).toBe(new Date(Math.floor(NOW / 1000) * 1000).toISOString())
  })

  it('never moves it back, and ignores lines of another secret or step length', () => {
    const d = doc({alice: {lastUsedStep: STEP + 1}, bob: {}, carol: {interval: 60}})
    const text = [
      line('alice', '0', code(STEP), formatOathTime(NOW)),
      ['HOTP/T30/6', 'bob', '-', OTHER.toString('hex'), '0', code(STEP, OTHER), formatOathTime(NOW)].join('\t'),
      line('carol', '0', code(STEP), formatOathTime(NOW)),
    ].join('\n')
    expect(importReplay(d, parseUsersFile(text), NOW)).toEqual([])
    expect([...d.users.values()].map((u) => u.lastUsedStep)).toEqual([STEP + 1, null, null])
  })
})

describe('renderUsersFile', () => {
  const render = (d: Doc, text = '') => renderUsersFile(oathUsers(d), parseUsersFile(text), NOW, d.settings.window)

  it('writes a header and one tab-separated line per user', () => {
    expect(render(doc({bob: {}, alice: {}}))).toBe(`${OATH_HEADER}\n${line('alice')}\n${line('bob')}\n`)
  })

  it('writes only the header when SSH 2FA is off (the file must exist)', () => {
    expect(render(doc({alice: {}}, {ssh: false}), line('alice', '0', code(STEP), formatOathTime(NOW)))).toBe(`${OATH_HEADER}\n`)
  })

  it("keeps pam_oath's trailing fields byte for byte while type and secret are unchanged", () => {
    const recorded = line('alice', '7', code(STEP), '2026-11-27T12:00:05L')
    const d = doc({alice: {lastUsedStep: STEP}, bob: {}})
    expect(render(d, `${recorded}\n${line('bob')}\n`)).toBe(`${OATH_HEADER}\n${recorded}\n${line('bob')}\n`)
  })

  it('keeps them even before the store has imported them', () => {
    const recorded = line('alice', '0', code(STEP), formatOathTime(NOW))
    expect(render(doc({alice: {lastUsedStep: STEP - 3}}), recorded)).toContain(recorded)
  })

  it("writes the store's newer step (a code login:check accepted) so that sshd refuses it", () => {
    const d = doc({alice: {lastUsedStep: STEP + 1}})
    const out = render(d, line('alice', '2', code(STEP), formatOathTime(NOW)))
    expect(out).toContain(line('alice', '2', code(STEP + 1), formatOathTime((STEP + 1) * 30_000)))
  })

  it('restores the replay fields from the store when a line comes back (SSH 2FA off and on)', () => {
    expect(render(doc({alice: {lastUsedStep: STEP}}))).toContain(line('alice', '0', code(STEP), formatOathTime(STEP * 30_000)))
    expect(render(doc({alice: {lastUsedStep: STEP, digits: 8}}))).toContain(`HOTP/T30/8\talice\t-\t${HEX}\t0\t${code(STEP, KEY, 8)}\t`)
  })

  it('drops the old fields when the secret changed', () => {
    const old = ['HOTP/T30/6', 'alice', '-', OTHER.toString('hex'), '0', code(STEP, OTHER), formatOathTime(NOW)].join('\t')
    expect(render(doc({alice: {}}), old)).toBe(`${OATH_HEADER}\n${line('alice')}\n`)
  })

  it('drops lines of users without a secret and keeps nothing it does not own', () => {
    expect(render(doc({alice: {}}), `# mine\n${line('mallory')}\n${line('alice')}\n`)).toBe(`${OATH_HEADER}\n${line('alice')}\n`)
  })
})

describe('compareUsersFile', () => {
  const users = oathUsers(doc({alice: {}, bob: {}}))
  it('is fresh when users, types and secrets match, whatever the trailing fields', () => {
    expect(compareUsersFile(users, parseUsersFile(`${line('alice', '3', code(STEP), formatOathTime(NOW))}\n${line('bob')}`)).fresh).toBe(true)
    expect(compareUsersFile(users, parseUsersFile(`HOTP/T30/6 alice - ${HEX.toUpperCase()}\n${line('bob')}`)).fresh).toBe(true)
  })

  it('names what is stale', () => {
    const text = [line('alice').replace('T30/6', 'T60/6'), line('carol'), line('carol')].join('\n')
    expect(compareUsersFile(users, parseUsersFile(text))).toEqual({fresh: false, exists: true, missing: ['bob'], extra: ['carol'], different: ['alice']})
    expect(compareUsersFile(users, parseUsersFile(`${line('alice')}\n${line('alice')}\n${line('bob')}`)).different).toEqual(['alice'])
    expect(compareUsersFile(users, parseUsersFile(`${line('alice').replace('\t-\t', '\tpw\t')}\n${line('bob')}`)).different).toEqual(['alice'])
  })

  it('is stale when the file is missing, even with no users', () => {
    expect(compareUsersFile([], undefined)).toMatchObject({fresh: false, exists: false})
    expect(compareUsersFile([], [])).toMatchObject({fresh: true, exists: true})
  })
})

describe('PAM and paths', () => {
  it("builds the TrueNAS-style PAM line with the store's window", () => {
    expect(pamOathLine('/etc/users.oath', 2)).toBe('auth [success=ok user_unknown=ignore default=die] pam_oath.so usersfile=/etc/users.oath window=2')
  })

  it('finds pam_oath in a PAM file and whether it follows the password module', () => {
    const ok = findPamOath(`# x\n@include common-auth\n${pamOathLine('/etc/users.oath', 1)}\n`)
    expect(ok).toMatchObject({usersFile: '/etc/users.oath', window: 1, afterPassword: true})
    expect(findPamOath(`${pamOathLine('/x', 3)}\n@include common-auth\n`)).toMatchObject({afterPassword: false, window: 3})
    expect(findPamOath(`@include common-auth\n# ${pamOathLine('/x', 1)}\n`)).toBeUndefined()
  })

  it('accepts only absolute paths a PAM line can carry', () => {
    expect(checkOathPath('/etc/users.oath')).toBe('/etc/users.oath')
    for (const bad of ['users.oath', '/etc/my users', '/home/${USER}/.oath', '/etc/', '/etc/a]b']) expect(() => checkOathPath(bad)).toThrow(TfaError)
  })
})
