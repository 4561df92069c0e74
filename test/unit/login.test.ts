import {describe, expect, it} from 'vitest'
import {findCode, hashCodes, hashCodesAsync, oneTimeCode} from '../../src/core/codes.js'
import {applyEffect, type Decision, decideLogin, type Method, type Reason, type Service, verifyCode} from '../../src/core/login.js'
import {DEFAULT_SETTINGS, newUserRecord, type Settings, type UserRecord} from '../../src/core/model.js'
import {hotp, timeStep} from '../../src/core/totp.js'

// The RFC 4226/6238 SHA1 key "12345678901234567890", in base32 as the store keeps it.
const KEY = Buffer.from('12345678901234567890', 'ascii')
const SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'
// 2025-01-01T00:00:15Z: the middle of a 30 s step.
const NOW = Date.UTC(2025, 0, 1, 0, 0, 15)

const settings = (over: Partial<Settings> = {}): Settings => ({...DEFAULT_SETTINGS, enabled: true, window: 1, ...over})
const enrolled = (over: Partial<UserRecord> = {}): UserRecord => ({
  ...newUserRecord(),
  secret: SECRET,
  createdAt: new Date(NOW - 86_400_000).toISOString(),
  ...over,
})

/** The 6-digit code `offset` steps from the one containing `now`. */
const codeAt = (now: number, offset = 0): string => hotp(KEY, timeStep(now, 30) + offset, 6)
/** A 6-digit code that matches none of the steps in a window of `window` around `now`. */
function wrongCodeAt(now: number, window = 1): string {
  const valid = new Set(Array.from({length: 2 * window + 1}, (_, i) => codeAt(now, i - window)))
  for (let n = 0; ; n++) {
    const candidate = String(n).padStart(6, '0')
    if (!valid.has(candidate)) return candidate
  }
}

const ssh = (code?: string, now = NOW) => ({service: 'ssh' as const, method: 'password' as const, code, now})
const ui = (code?: string, now = NOW) => ({service: 'ui' as const, method: 'password' as const, code, now})

describe('decideLogin decision table (no code given)', () => {
  interface Row {
    service: Service
    method: Method
    global: boolean
    ssh2fa: boolean
    stig: boolean
    secret: boolean
  }
  type Expected = Pick<Decision, 'allowed' | 'reason' | 'setupPrompt'>

  // The rules, in the words of the documentation.
  function expected(r: Row): Expected {
    const allowed = (reason: Reason, setupPrompt = false): Expected => ({allowed: true, reason, setupPrompt})
    const denied = (reason: Reason): Expected => ({allowed: false, reason, setupPrompt: false})
    // global 2FA off: everyone gets in
    if (!r.global) return allowed('twofactor_disabled')
    // SSH with a key: the key is the second factor
    if (r.service === 'ssh' && r.method === 'key') return allowed('key_auth')
    // SSH while SSH 2FA is off: no code asked
    if (r.service === 'ssh' && !r.ssh2fa) return allowed('ssh_2fa_off')
    // no secret: STIG mode refuses the UI; otherwise allowed, and the UI prompts for setup
    if (!r.secret) {
      if (r.service === 'ui' && r.stig) return denied('stig_requires_2fa')
      return allowed('no_secret', r.service === 'ui' && !r.stig)
    }
    // a secret and no code: a code is required
    return denied('code_required')
  }

  const onOff = [true, false]
  const channels: Array<[Service, Method]> = [
    ['ui', 'password'],
    ['ssh', 'password'],
    ['ssh', 'key'],
  ]
  const rows = channels.flatMap(([service, method]) =>
    onOff.flatMap((global) =>
      onOff.flatMap((ssh2fa) =>
        onOff.flatMap((stig) =>
          onOff.map((secret) => {
            const row: Row = {service, method, global, ssh2fa, stig, secret}
            const want = expected(row)
            const name =
              [
                `${service}/${method}`,
                `2FA ${global ? 'on' : 'off'}`,
                `SSH 2FA ${ssh2fa ? 'on' : 'off'}`,
                `STIG ${stig ? 'on' : 'off'}`,
                secret ? 'secret' : 'no secret',
              ].join(', ') + ` → ${want.allowed ? 'allowed' : 'denied'} ${want.reason}${want.setupPrompt ? ' with setup prompt' : ''}`
            return {name, row, want}
          }),
        ),
      ),
    ),
  )

  it('covers every combination once', () => {
    expect(rows).toHaveLength(3 * 2 ** 4)
    expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length)
  })

  it.each(rows)('$name', ({row, want}) => {
    const cfg = settings({enabled: row.global, ssh: row.ssh2fa, stig: row.stig})
    const user = row.secret ? enrolled() : undefined
    const decision = decideLogin(cfg, user, {service: row.service, method: row.method, now: NOW})
    expect({allowed: decision.allowed, reason: decision.reason, setupPrompt: decision.setupPrompt}).toEqual(want)
    expect(decision.effect).toEqual({kind: 'none'})
  })

  it('treats a user with a record but no secret like an unknown user', () => {
    const record = {...newUserRecord(), failures: 1}
    expect(decideLogin(settings(), record, ui()).reason).toBe('no_secret')
    expect(decideLogin(settings({stig: true, ssh: true}), record, ui()).reason).toBe('stig_requires_2fa')
  })

  it('judges a code given empty or only spaces as invalid, not as missing', () => {
    for (const code of ['', '   ']) {
      const d = decideLogin(settings(), enrolled(), ui(code))
      expect(d.reason).toBe('code_invalid')
      expect(d.effect).toEqual({kind: 'failed'})
    }
  })
})

describe('decideLogin with a TOTP code', () => {
  const cfg = settings({ssh: true})

  it('accepts the current code and names its step', () => {
    const d = decideLogin(cfg, enrolled(), ui(codeAt(NOW)))
    expect(d.allowed).toBe(true)
    expect(d.reason).toBe('code_accepted')
    expect(d.effect).toEqual({kind: 'accepted', step: timeStep(NOW, 30), drift: 0})
  })

  it('accepts the current code over SSH with a password', () => {
    expect(decideLogin(cfg, enrolled(), ssh(codeAt(NOW))).reason).toBe('code_accepted')
  })

  it('refuses a wrong code and counts a failure', () => {
    const d = decideLogin(cfg, enrolled(), ui(wrongCodeAt(NOW)))
    expect(d.allowed).toBe(false)
    expect(d.reason).toBe('code_invalid')
    expect(d.effect).toEqual({kind: 'failed'})
  })

  it('refuses a code that was already accepted', () => {
    const user = enrolled()
    const first = decideLogin(cfg, user, ui(codeAt(NOW)))
    applyEffect(cfg, user, first.effect, NOW)
    const again = decideLogin(cfg, user, ui(codeAt(NOW), NOW + 5_000))
    expect(again.allowed).toBe(false)
    expect(again.reason).toBe('code_replayed')
  })

  it('refuses an older code once a newer one was accepted', () => {
    const user = enrolled({lastUsedStep: timeStep(NOW, 30)})
    const d = decideLogin(cfg, user, ui(codeAt(NOW, -1)))
    expect(d.allowed).toBe(false)
    expect(d.reason).toBe('code_replayed')
  })

  it('accepts a code newer than the last accepted one', () => {
    const user = enrolled({lastUsedStep: timeStep(NOW, 30) - 1})
    expect(decideLogin(cfg, user, ui(codeAt(NOW))).reason).toBe('code_accepted')
  })

  it('accepts a code typed with a space', () => {
    const code = codeAt(NOW)
    const d = decideLogin(cfg, enrolled(), ui(`${code.slice(0, 3)} ${code.slice(3)}`))
    expect(d.reason).toBe('code_accepted')
  })

  it.each([
    ['letters', 'abcdef'],
    ['digits and a letter', '12345x'],
    ['five digits', '12345'],
    ['seven digits', '1234567'],
  ])('refuses a code of %s as invalid', (_, code) => {
    const d = decideLogin(cfg, enrolled(), ui(code))
    expect(d.allowed).toBe(false)
    expect(d.reason).toBe('code_invalid')
    expect(d.effect).toEqual({kind: 'failed'})
  })

  it('refuses the right code with an extra digit', () => {
    expect(decideLogin(cfg, enrolled(), ui(`${codeAt(NOW)}0`)).reason).toBe('code_invalid')
  })

  it("reports skewSteps -1 for the previous step's code with window 1", () => {
    const d = decideLogin(cfg, enrolled(), ui(codeAt(NOW, -1)))
    expect(d.reason).toBe('code_accepted')
    expect(d.skewSteps).toBe(-1)
    expect(d.effect).toEqual({kind: 'accepted', step: timeStep(NOW, 30) - 1, drift: -1})
  })

  it("reports skewSteps 1 for the next step's code with window 1", () => {
    expect(decideLogin(cfg, enrolled(), ui(codeAt(NOW, 1))).skewSteps).toBe(1)
  })

  it("reports no skewSteps for the current step's code", () => {
    const d = decideLogin(cfg, enrolled(), ui(codeAt(NOW)))
    expect(d).not.toHaveProperty('skewSteps')
  })

  it("refuses the previous step's code with window 0", () => {
    expect(decideLogin(settings({window: 0}), enrolled(), ui(codeAt(NOW, -1))).reason).toBe('code_invalid')
  })

  it("uses the user's digits and interval", () => {
    const user = enrolled({digits: 8, interval: 60})
    const code8 = hotp(KEY, timeStep(NOW, 60), 8)
    expect(decideLogin(cfg, user, ui(code8)).effect).toEqual({kind: 'accepted', step: timeStep(NOW, 60), drift: 0})
    expect(decideLogin(cfg, user, ui(code8.slice(2))).reason).toBe('code_invalid')
  })
})

describe("a token's drift", () => {
  const cfg = settings({window: 1})
  const step = timeStep(NOW, 30)

  // recorded drift, the code's offset from the host's clock → accepted?, the drift then recorded
  // biome-ignore format: one row per case
  const rows: Array<[number, number, boolean, number | undefined]> = [
    [0,     0,  true,  undefined], // on time: nothing recorded
    [0,     1,  true,  1],         // one step ahead: recorded
    [0,     2,  false, undefined], // outside the window around the host's clock
    [3,     2,  true,  2],         // the window is centred on the recorded drift
    [3,     4,  true,  4],
    [3,     0,  false, undefined], // the host's own step is outside that window
    [10,    11, true,  10],        // a login never records more than ±10 steps
    [-10,  -11, true,  -10],
    [10,    9,  true,  9],         // and follows the token back
    [500,  501, true,  500],       // a resynced drift: logins keep it, never move it further away
    [500,  499, true,  499],       // but follow it back toward the host's clock
    [500,    0, false, undefined], // the host's step is far outside the window
  ]
  it.each(rows)('recorded %i, code at %i: accepted %s, drift then %s', (recorded, offset, accepted, after) => {
    const user = enrolled({driftSteps: recorded || undefined})
    const d = decideLogin(cfg, user, ui(codeAt(NOW, offset)))
    expect(d.allowed).toBe(accepted)
    if (!accepted) {
      expect(d.effect).toEqual({kind: 'failed'})
      return
    }
    expect(d.effect).toEqual({kind: 'accepted', step: step + offset, drift: after ?? 0})
    applyEffect(cfg, user, d.effect, NOW)
    expect(user.driftSteps).toBe(after)
    expect(user.lastUsedStep).toBe(step + offset)
  })

  it('keeps replay protection on absolute steps when the drift changes', () => {
    const user = enrolled({driftSteps: 3})
    applyEffect(cfg, user, decideLogin(cfg, user, ui(codeAt(NOW, 4))).effect, NOW) // step + 4, drift 4
    // the next login, with the window now around step + 4: step + 3 is older than the accepted step
    expect(decideLogin(cfg, user, ui(codeAt(NOW, 3), NOW + 1000)).reason).toBe('code_replayed')
    expect(decideLogin(cfg, user, ui(codeAt(NOW, 5), NOW + 1000)).reason).toBe('code_accepted')
  })

  it('never looks further than a day, whatever a record says', () => {
    const user = enrolled({driftSteps: 100_000})
    expect(decideLogin(cfg, user, ui(codeAt(NOW, 100_000))).reason).toBe('code_invalid')
    expect(decideLogin(cfg, user, ui(codeAt(NOW, 2880))).reason).toBe('code_accepted')
  })
})

describe('lockout', () => {
  const cfg = settings({maxFailures: 3, lockout: 60})

  /** Makes `n` failed checks, applying each one's effect as the store would. */
  function fail(user: UserRecord, n: number, now = NOW): void {
    for (let i = 0; i < n; i++) {
      const d = decideLogin(cfg, user, ui(wrongCodeAt(now), now))
      expect(d.effect).toEqual({kind: 'failed'})
      applyEffect(cfg, user, d.effect, now)
    }
  }

  it('does not lock before maxFailures failures', () => {
    const user = enrolled()
    fail(user, 2)
    expect(user.failures).toBe(2)
    expect(user.lockedUntil).toBeNull()
  })

  it('locks for `lockout` seconds after maxFailures failures', () => {
    const user = enrolled()
    fail(user, 3)
    expect(user.lockedUntil).toBe(new Date(NOW + 60_000).toISOString())
  })

  it('refuses even the right code while locked out', () => {
    const user = enrolled()
    fail(user, 3)
    const d = decideLogin(cfg, user, ui(codeAt(NOW + 10_000), NOW + 10_000))
    expect(d.allowed).toBe(false)
    expect(d.reason).toBe('locked_out')
    expect(d.effect).toEqual({kind: 'none'})
  })

  it('refuses a proof code while locked out', () => {
    const user = enrolled()
    fail(user, 3)
    expect(verifyCode(cfg, user, codeAt(NOW), NOW).reason).toBe('locked_out')
  })

  it('resets the failure count after a success', () => {
    const user = enrolled()
    fail(user, 2)
    const d = decideLogin(cfg, user, ui(codeAt(NOW)))
    applyEffect(cfg, user, d.effect, NOW)
    expect(user.failures).toBe(0)
    expect(user.lockedUntil).toBeNull()
    fail(user, 2)
    expect(user.lockedUntil).toBeNull()
  })

  it('never locks when maxFailures is 0', () => {
    const never = settings({maxFailures: 0, lockout: 60})
    const user = enrolled()
    for (let i = 0; i < 50; i++) applyEffect(never, user, {kind: 'failed'}, NOW)
    expect(user.failures).toBe(50)
    expect(user.lockedUntil).toBeNull()
    expect(decideLogin(never, user, ui(codeAt(NOW))).reason).toBe('code_accepted')
  })

  it('lets a right code through once the lockout has expired', () => {
    const user = enrolled()
    fail(user, 3)
    const later = NOW + 61_000
    const d = decideLogin(cfg, user, ui(codeAt(later), later))
    expect(d.reason).toBe('code_accepted')
    applyEffect(cfg, user, d.effect, later)
    expect(user.failures).toBe(0)
    expect(user.lockedUntil).toBeNull()
  })

  it('starts counting afresh after an expired lockout', () => {
    const user = enrolled()
    fail(user, 3)
    const later = NOW + 61_000
    const d = decideLogin(cfg, user, ui(wrongCodeAt(later), later))
    expect(d.reason).toBe('code_invalid')
    applyEffect(cfg, user, d.effect, later)
    expect(user.failures).toBe(1)
    expect(user.lockedUntil).toBeNull()
  })
})

describe('recovery codes', () => {
  const cfg = settings()

  function withRecovery() {
    const codes = [oneTimeCode(2), oneTimeCode(2), oneTimeCode(2)]
    return {codes, user: enrolled({recovery: hashCodes(codes)})}
  }

  it('makes codes of two dash-joined groups of five base32 characters', () => {
    expect(oneTimeCode(2)).toMatch(/^[A-Z2-7]{5}-[A-Z2-7]{5}$/)
    expect(oneTimeCode(3)).toMatch(/^[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{5}$/)
  })

  it('accepts a recovery code and names its index', () => {
    const {codes, user} = withRecovery()
    const d = decideLogin(cfg, user, ui(codes[1]))
    expect(d.allowed).toBe(true)
    expect(d.reason).toBe('recovery_code_accepted')
    expect(d.effect).toEqual({kind: 'recovery_used', index: 1})
  })

  it.each([
    ['lowercase', (c: string) => c.toLowerCase()],
    ['without the dash', (c: string) => c.replace('-', '')],
    ['lowercase without the dash', (c: string) => c.replace('-', '').toLowerCase()],
    ['with spaces instead of the dash', (c: string) => c.replace('-', ' ')],
  ])('accepts a recovery code typed %s', (_, typed) => {
    const {codes, user} = withRecovery()
    expect(decideLogin(cfg, user, ui(typed(codes[0]))).reason).toBe('recovery_code_accepted')
  })

  it('accepts each recovery code only once', () => {
    const {codes, user} = withRecovery()
    const first = decideLogin(cfg, user, ui(codes[2]))
    applyEffect(cfg, user, first.effect, NOW)
    expect(user.recovery?.hashes).toHaveLength(2)
    const again = decideLogin(cfg, user, ui(codes[2]))
    expect(again.allowed).toBe(false)
    expect(again.reason).toBe('code_invalid')
  })

  it('keeps the other recovery codes usable after one is used', () => {
    const {codes, user} = withRecovery()
    applyEffect(cfg, user, decideLogin(cfg, user, ui(codes[1])).effect, NOW)
    for (const code of [codes[0], codes[2]]) {
      const d = decideLogin(cfg, user, ui(code))
      expect(d.reason).toBe('recovery_code_accepted')
      applyEffect(cfg, user, d.effect, NOW)
    }
    expect(user.recovery?.hashes).toEqual([])
  })

  it('resets failures when a recovery code is used', () => {
    const {codes, user} = withRecovery()
    user.failures = 2
    applyEffect(cfg, user, decideLogin(cfg, user, ui(codes[0])).effect, NOW)
    expect(user.failures).toBe(0)
  })

  it('accepts each code hashed side by side (hashCodesAsync) once, at its own index, as one hashed in turn', async () => {
    const codes = [oneTimeCode(2), oneTimeCode(2), oneTimeCode(2), oneTimeCode(2)]
    const recovery = await hashCodesAsync(codes)
    expect(recovery.hashes).toHaveLength(4)
    expect(new Set(recovery.hashes).size).toBe(4)
    // the same function of code and salt as hashCodes: findCode hashes one by one
    for (const [i, code] of codes.entries()) expect(findCode(recovery, code)).toBe(i)
    expect(findCode(hashCodes(codes), codes[3])).toBe(3)
    const user = enrolled({recovery})
    for (const code of [codes[2], codes[0], codes[3], codes[1]]) {
      const d = decideLogin(cfg, user, ui(code.toLowerCase()))
      expect(d.reason).toBe('recovery_code_accepted')
      applyEffect(cfg, user, d.effect, NOW)
      expect(decideLogin(cfg, user, ui(code)).reason).toBe('code_invalid')
    }
    expect(user.recovery?.hashes).toEqual([])
  })

  it('refuses a recovery code of another user', () => {
    const {user} = withRecovery()
    const other = withRecovery()
    expect(decideLogin(cfg, user, ui(other.codes[0])).reason).toBe('code_invalid')
  })
})

describe('bypass codes', () => {
  const cfg = settings({maxFailures: 3, lockout: 600})

  function withBypass(expiresAt: number, over: Partial<UserRecord> = {}) {
    const code = oneTimeCode(3)
    const {salt, hashes} = hashCodes([code])
    return {code, user: enrolled({bypass: {salt, hash: hashes[0], expiresAt: new Date(expiresAt).toISOString()}, ...over})}
  }

  it('accepts a bypass code before it expires', () => {
    const {code, user} = withBypass(NOW + 3_600_000)
    const d = decideLogin(cfg, user, ui(code))
    expect(d.allowed).toBe(true)
    expect(d.reason).toBe('bypass_accepted')
    expect(d.effect).toEqual({kind: 'bypass_used'})
  })

  it('accepts a bypass code typed in lowercase without dashes', () => {
    const {code, user} = withBypass(NOW + 3_600_000)
    expect(decideLogin(cfg, user, ui(code.replaceAll('-', '').toLowerCase())).reason).toBe('bypass_accepted')
  })

  it('accepts a bypass code while the user is locked out, and lifts the lockout', () => {
    const {code, user} = withBypass(NOW + 3_600_000, {failures: 3, lockedUntil: new Date(NOW + 600_000).toISOString()})
    expect(decideLogin(cfg, user, ui(codeAt(NOW))).reason).toBe('locked_out')
    const d = decideLogin(cfg, user, ui(code))
    expect(d.reason).toBe('bypass_accepted')
    applyEffect(cfg, user, d.effect, NOW)
    expect(user.bypass).toBeNull()
    expect(user.failures).toBe(0)
    expect(user.lockedUntil).toBeNull()
  })

  it('accepts a bypass code only once', () => {
    const {code, user} = withBypass(NOW + 3_600_000)
    applyEffect(cfg, user, decideLogin(cfg, user, ui(code)).effect, NOW)
    expect(decideLogin(cfg, user, ui(code)).allowed).toBe(false)
  })

  it('refuses a bypass code at and after expiresAt', () => {
    const expiresAt = NOW + 60_000
    const {code, user} = withBypass(expiresAt)
    for (const now of [expiresAt, expiresAt + 1, expiresAt + 3_600_000]) {
      const d = decideLogin(cfg, user, ui(code, now))
      expect(d.allowed).toBe(false)
      expect(d.reason).toBe('code_invalid')
    }
  })

  it('refuses an expired bypass code while locked out', () => {
    const {code, user} = withBypass(NOW - 1, {failures: 3, lockedUntil: new Date(NOW + 600_000).toISOString()})
    expect(decideLogin(cfg, user, ui(code)).reason).toBe('locked_out')
  })

  it('does not accept a bypass code as a self-service proof', () => {
    const {code, user} = withBypass(NOW + 3_600_000)
    expect(verifyCode(cfg, user, code, NOW).allowed).toBe(false)
  })
})
