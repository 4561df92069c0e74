// otplib as the oracle for the hand-written TOTP (src/core/totp.ts) and otpauth URIs
// (src/core/uri.ts): over random secrets, times and every supported algorithm × digits × period,
// the product's codes equal otplib's, the login's step matcher finds otplib's code at its step,
// and otplib's URI parser reads the product's URIs exactly as they were meant.
import {parse as parseUri} from '@otplib/uri'
import {createGuardrails, generateSync, generateURI, verifySync} from 'otplib'
import {describe, expect, it} from 'vitest'
import {base32Encode} from '../../src/core/base32.js'
import {ALGORITHMS, hotp, matchStep, timeStep} from '../../src/core/totp.js'
import {otpauthUri} from '../../src/core/uri.js'
import {prng, SEED} from '../helpers/random.js'

const rand = prng(SEED)
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1))
const bytes = (n: number) => Uint8Array.from({length: n}, () => int(0, 255))
const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)]

// otplib refuses secrets under 16 bytes by default; 10-byte (80-bit) secrets exist in imports.
const guardrails = createGuardrails({MIN_SECRET_BYTES: 10, MAX_SECRET_BYTES: 64})
const DIGITS = [6, 7, 8] as const
const PERIODS = [30, 60] as const
const CASES = 200

describe(`the product's TOTP equals otplib's (seed ${SEED})`, () => {
  for (const algorithm of ALGORITHMS)
    for (const digits of DIGITS)
      for (const period of PERIODS)
        it(`${algorithm}, ${digits} digits, ${period} s: ${CASES} random secrets and times`, () => {
          for (let i = 0; i < CASES; i++) {
            const key = bytes(int(10, 64))
            const secret = base32Encode(key)
            // Any moment from 1970 to about 2242 (past 2^32 s, where 32-bit counters would wrap).
            const nowMs = int(0, 2 ** 33) * 1000 + int(0, 999)
            const opts = {secret, algorithm: algorithm.toLowerCase() as 'sha1', digits, period, epoch: nowMs / 1000, guardrails}
            const theirs = generateSync(opts)
            const step = timeStep(nowMs, period)
            const ours = hotp(key, step, digits, algorithm)
            expect(ours, `secret ${secret} at ${nowMs} ms`).toBe(theirs)
            // The login's matcher accepts otplib's code at exactly its step (window 0 and 1) …
            const params = {key, interval: period, digits, algorithm}
            expect(matchStep(params, theirs, nowMs, 0)).toBe(step)
            expect(matchStep(params, theirs, nowMs + period * 1000, 1)).toBe(step)
            // … and otplib accepts the product's code.
            expect(verifySync({...opts, token: ours}).valid).toBe(true)
          }
        })
})

// Printable ASCII and a little beyond, with the characters URIs are touchy about.
const NAME_CHARS = "abcXYZ09 -._~!$&'()*+,;=%#?/@é€"
const name = (lo: number, hi: number) => Array.from({length: int(lo, hi)}, () => pick([...NAME_CHARS])).join('')

describe(`otplib parses the product's otpauth URIs identically (seed ${SEED})`, () => {
  it(`reads secret, digits, period, algorithm, label and issuer back from ${CASES} random URIs`, () => {
    for (let i = 0; i < CASES; i++) {
      const p = {
        issuer: pick(['tfactl', name(1, 20)]),
        user: pick(['alice', 'svc-backup', 'j.doe_2']),
        host: pick(['nas', 'nas.example.com', name(1, 12)]),
        secret: base32Encode(bytes(int(10, 64))),
        interval: pick(PERIODS),
        digits: pick(DIGITS),
        algorithm: pick(ALGORITHMS),
      }
      const uri = otpauthUri(p)
      const parsed = parseUri(uri)
      expect(parsed.type, uri).toBe('totp')
      expect(parsed.label, uri).toBe(`${p.issuer}:${p.user}@${p.host}`)
      const {secret, issuer, algorithm = 'sha1', digits = 6, period = 30} = parsed.params
      expect({secret, issuer, algorithm, digits, period}, uri).toEqual({
        secret: p.secret,
        issuer: p.issuer,
        algorithm: p.algorithm.toLowerCase(),
        digits: p.digits,
        period: p.interval,
      })
      // otplib's own URI for the same account reads back the same (apart from its defaults).
      const theirs = parseUri(
        generateURI({
          issuer: p.issuer,
          label: `${p.user}@${p.host}`,
          secret: p.secret,
          algorithm: p.algorithm.toLowerCase() as 'sha1',
          digits: p.digits,
          period: p.interval,
        }),
      )
      expect(theirs.label).toBe(parsed.label)
      expect({algorithm: 'sha1', digits: 6, period: 30, ...parsed.params}).toEqual({algorithm: 'sha1', digits: 6, period: 30, ...theirs.params})
    }
  })
})
