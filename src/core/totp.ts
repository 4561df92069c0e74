import {hmacOf} from './mac.js'

export type Algorithm = 'SHA1' | 'SHA256' | 'SHA512'
export const ALGORITHMS: readonly Algorithm[] = ['SHA1', 'SHA256', 'SHA512']

/**
 * HMAC (RFC 2104) of 8-byte counters under one key: the key's padded blocks made once for every
 * counter a check looks at (mac.ts).
 */
function counterMac(key: Uint8Array, algorithm: Algorithm): (counter: number) => Buffer {
  const mac = hmacOf(algorithm.toLowerCase(), key)
  return (counter) => {
    if (!Number.isSafeInteger(counter) || counter < 0) throw new RangeError(`HOTP counter out of range: ${counter}`)
    const msg = Buffer.allocUnsafe(8)
    msg.writeUInt32BE(Math.floor(counter / 2 ** 32), 0)
    msg.writeUInt32BE(counter >>> 0, 4)
    return mac(msg)
  }
}

/** RFC 4226 dynamic truncation of one MAC: the code's value (before it is written with `digits` digits). */
function truncate(mac: Buffer, digits: number): number {
  const offset = mac[mac.length - 1] & 0x0f
  return (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits
}

/** RFC 4226 HOTP values of one key, as zero-padded decimal strings: the key prepared once for every counter asked. */
export function hotpOf(key: Uint8Array, digits: number, algorithm: Algorithm = 'SHA1'): (counter: number) => string {
  const mac = counterMac(key, algorithm)
  return (counter) => String(truncate(mac(counter), digits)).padStart(digits, '0')
}

/** RFC 4226 HOTP value for one counter, as a zero-padded decimal string. */
export const hotp = (key: Uint8Array, counter: number, digits: number, algorithm: Algorithm = 'SHA1'): string => hotpOf(key, digits, algorithm)(counter)

/** The RFC 6238 time step that contains `nowMs`. */
export const timeStep = (nowMs: number, interval: number): number => Math.floor(nowMs / 1000 / interval)

export interface TotpParams {
  key: Uint8Array
  interval: number
  digits: number
  algorithm: Algorithm
}

/**
 * Finds the time step whose code equals `code`, looking `window` steps before and after the
 * current one (moved by `centre` steps: a token's recorded drift). Every candidate is compared in
 * constant time and all are always compared, so the answer's timing does not say which step (if
 * any) matched. Returns the newest matching step.
 */
export function matchStep(params: TotpParams, code: string, nowMs: number, window: number, centre = 0): number | undefined {
  if (code.length !== params.digits || !/^[0-9]+$/.test(code)) return undefined
  const current = timeStep(nowMs, params.interval) + centre
  const given = Number(code) // digits only, `digits` of them: one integer, compared in constant time
  const mac = counterMac(params.key, params.algorithm)
  let found: number | undefined
  for (let step = current - window; step <= current + window; step++) {
    if (truncate(mac(step), params.digits) === given) found = step
  }
  return found
}

/**
 * The step `t` within `range` steps of the current one whose code is `second` while step `t - 1`'s
 * is `first` (two consecutive codes of a token), nearest the current step; undefined when none.
 * Each step's code is computed once.
 */
export function matchPair(params: TotpParams, first: string, second: string, nowMs: number, range: number): number | undefined {
  const current = timeStep(nowMs, params.interval)
  const from = current - range - 1 // the first code's step for t = current - range
  const code = hotpOf(params.key, params.digits, params.algorithm)
  const codes = Array.from({length: 2 * range + 2}, (_, i) => code(from + i))
  let best: number | undefined
  for (let i = 1; i < codes.length; i++) {
    if (codes[i - 1] !== first || codes[i] !== second) continue
    const step = from + i
    if (best === undefined || Math.abs(step - current) < Math.abs(best - current)) best = step
  }
  return best
}
