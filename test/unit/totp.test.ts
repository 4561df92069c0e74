import {createHmac, randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {ALGORITHMS, type Algorithm, hotp, matchStep, type TotpParams} from '../../src/core/totp.js'

// RFC 6238 Appendix B: the seeds, as ASCII, for each HMAC.
const RFC6238_KEYS: Record<Algorithm, Buffer> = {
  SHA1: Buffer.from('12345678901234567890', 'ascii'),
  SHA256: Buffer.from('12345678901234567890123456789012', 'ascii'),
  SHA512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234', 'ascii'),
}

// RFC 6238 Appendix B, table of test vectors: time (s), T (hex, as printed), TOTP, mode.
const RFC6238_VECTORS: Array<{time: number; stepHex: string; totp: string; algorithm: Algorithm}> = [
  {time: 59, stepHex: '0000000000000001', totp: '94287082', algorithm: 'SHA1'},
  {time: 59, stepHex: '0000000000000001', totp: '46119246', algorithm: 'SHA256'},
  {time: 59, stepHex: '0000000000000001', totp: '90693936', algorithm: 'SHA512'},
  {time: 1111111109, stepHex: '00000000023523EC', totp: '07081804', algorithm: 'SHA1'},
  {time: 1111111109, stepHex: '00000000023523EC', totp: '68084774', algorithm: 'SHA256'},
  {time: 1111111109, stepHex: '00000000023523EC', totp: '25091201', algorithm: 'SHA512'},
  {time: 1111111111, stepHex: '00000000023523ED', totp: '14050471', algorithm: 'SHA1'},
  {time: 1111111111, stepHex: '00000000023523ED', totp: '67062674', algorithm: 'SHA256'},
  {time: 1111111111, stepHex: '00000000023523ED', totp: '99943326', algorithm: 'SHA512'},
  {time: 1234567890, stepHex: '000000000273EF07', totp: '89005924', algorithm: 'SHA1'},
  {time: 1234567890, stepHex: '000000000273EF07', totp: '91819424', algorithm: 'SHA256'},
  {time: 1234567890, stepHex: '000000000273EF07', totp: '93441116', algorithm: 'SHA512'},
  {time: 2000000000, stepHex: '0000000003F940AA', totp: '69279037', algorithm: 'SHA1'},
  {time: 2000000000, stepHex: '0000000003F940AA', totp: '90698825', algorithm: 'SHA256'},
  {time: 2000000000, stepHex: '0000000003F940AA', totp: '38618901', algorithm: 'SHA512'},
  {time: 20000000000, stepHex: '0000000027BC86AA', totp: '65353130', algorithm: 'SHA1'},
  {time: 20000000000, stepHex: '0000000027BC86AA', totp: '77737706', algorithm: 'SHA256'},
  {time: 20000000000, stepHex: '0000000027BC86AA', totp: '47863826', algorithm: 'SHA512'},
]

// RFC 4226 Appendix D: HOTP values for counters 0-9 of the secret "12345678901234567890".
const RFC4226_HOTP = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489']

const rfcParams = (algorithm: Algorithm, digits = 8): TotpParams => ({key: RFC6238_KEYS[algorithm], interval: 30, digits, algorithm})

/** The same code with its last digit changed: never the right one. */
const otherCode = (code: string): string => code.slice(0, -1) + String((Number(code.at(-1)) + 1) % 10)

describe('matchStep with the RFC 6238 Appendix B vectors', () => {
  it.each(RFC6238_VECTORS)('accepts $totp ($algorithm) at T=$time s as step 0x$stepHex', ({time, stepHex, totp, algorithm}) => {
    expect(matchStep(rfcParams(algorithm), totp, time * 1000, 0)).toBe(Number.parseInt(stepHex, 16))
  })

  it.each(RFC6238_VECTORS)('refuses a wrong code ($algorithm) at T=$time s', ({time, totp, algorithm}) => {
    expect(matchStep(rfcParams(algorithm), otherCode(totp), time * 1000, 0)).toBeUndefined()
  })

  it.each(RFC6238_VECTORS)('refuses $totp ($algorithm) one step before and after T=$time s with window 0', ({time, totp, algorithm}) => {
    expect(matchStep(rfcParams(algorithm), totp, (time - 30) * 1000, 0)).toBeUndefined()
    expect(matchStep(rfcParams(algorithm), totp, (time + 30) * 1000, 0)).toBeUndefined()
  })
})

describe('hotp with the RFC 4226 Appendix D values', () => {
  it.each(RFC4226_HOTP.map((value, counter) => ({counter, value})))('gives $value for counter $counter', ({counter, value}) => {
    expect(hotp(RFC6238_KEYS.SHA1, counter, 6)).toBe(value)
  })

  it('defaults to SHA1', () => {
    expect(hotp(RFC6238_KEYS.SHA1, 1, 6, 'SHA1')).toBe(hotp(RFC6238_KEYS.SHA1, 1, 6))
  })

  it('zero-pads to the number of digits (RFC 6238 value 07081804)', () => {
    expect(hotp(RFC6238_KEYS.SHA1, 0x23523ec, 8)).toBe('07081804')
  })

  // The MAC is built from the key's padded blocks and one-shot digests: the same as Node's HMAC
  // for keys shorter than, as long as and longer than a block (64 octets; 128 for SHA512), and
  // for counters past 2^32.
  it.each(ALGORITHMS)('equals the value computed with createHmac (%s)', (algorithm) => {
    const reference = (key: Buffer, counter: number): string => {
      const msg = Buffer.alloc(8)
      msg.writeBigUInt64BE(BigInt(counter))
      const mac = createHmac(algorithm.toLowerCase(), key).update(msg).digest()
      return String((mac.readUInt32BE(mac[mac.length - 1] & 0x0f) & 0x7fffffff) % 1e8).padStart(8, '0')
    }
    for (const length of [1, 10, 20, 63, 64, 65, 127, 128, 129, 300]) {
      const key = randomBytes(length)
      for (const counter of [0, 1, 0xffffffff, 2 ** 32, 2 ** 32 + 5, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER])
        expect(hotp(key, counter, 8, algorithm)).toBe(reference(key, counter))
    }
  })

  it('refuses a counter that is not a whole number from 0 to 2^53 - 1', () => {
    for (const counter of [-1, 0.5, 2 ** 53, Number.NaN]) expect(() => hotp(RFC6238_KEYS.SHA1, counter, 6)).toThrow(RangeError)
  })
})

describe('matchStep window', () => {
  // Step 5 (T in [150 s, 180 s)): the RFC 4226 values for counters 4, 5 and 6 are its neighbours.
  const at = 165_000
  const params: TotpParams = {key: RFC6238_KEYS.SHA1, interval: 30, digits: 6, algorithm: 'SHA1'}

  it("accepts the previous step's code with window 1", () => {
    expect(matchStep(params, RFC4226_HOTP[4], at, 1)).toBe(4)
  })

  it("accepts the next step's code with window 1", () => {
    expect(matchStep(params, RFC4226_HOTP[6], at, 1)).toBe(6)
  })

  it("refuses the previous step's code with window 0", () => {
    expect(matchStep(params, RFC4226_HOTP[4], at, 0)).toBeUndefined()
  })

  it('refuses a code two steps old with window 1', () => {
    expect(matchStep(params, RFC4226_HOTP[3], at, 1)).toBeUndefined()
  })

  it('accepts a code two steps old with window 2', () => {
    expect(matchStep(params, RFC4226_HOTP[3], at, 2)).toBe(3)
  })

  it('returns the newest step when the code matches several steps', () => {
    // With 1 digit the code is the last digit of the RFC 4226 value: counters 1, 2 and 6 all give "2".
    const oneDigit: TotpParams = {...params, digits: 1}
    expect(matchStep(oneDigit, '2', 45_000, 1)).toBe(2) // steps 0-2: "4", "2", "2"
    expect(matchStep(oneDigit, '2', 105_000, 3)).toBe(6) // steps 0-6: 2 at 1, 2 and 6
  })

  it('never matches a code of the wrong length', () => {
    const right = RFC4226_HOTP[5]
    expect(matchStep(params, right, at, 1)).toBe(5)
    expect(matchStep(params, right.slice(0, 5), at, 1)).toBeUndefined()
    expect(matchStep(params, `${right}0`, at, 1)).toBeUndefined()
    expect(matchStep(params, `${right} `, at, 1)).toBeUndefined()
    expect(matchStep(params, '', at, 1)).toBeUndefined()
    // The 8-digit code of the same step ends with the 6-digit one.
    expect(matchStep({...params, digits: 8}, right, at, 1)).toBeUndefined()
  })

  // A code holding non-ASCII characters has more bytes than digits: it must simply not match.
  it('never matches (and does not throw for) a code with non-ASCII characters', () => {
    expect(matchStep(params, '12345é', at, 1)).toBeUndefined()
  })
})
