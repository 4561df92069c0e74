import {createHmac, timingSafeEqual} from 'node:crypto'

export type Algorithm = 'SHA1' | 'SHA256' | 'SHA512'
export const ALGORITHMS: readonly Algorithm[] = ['SHA1', 'SHA256', 'SHA512']

/** RFC 4226 HOTP value for one counter, as a zero-padded decimal string. */
export function hotp(key: Uint8Array, counter: number, digits: number, algorithm: Algorithm = 'SHA1'): string {
  const msg = Buffer.alloc(8)
  msg.writeBigUInt64BE(BigInt(counter))
  const mac = createHmac(algorithm.toLowerCase(), key).update(msg).digest()
  const offset = mac[mac.length - 1] & 0x0f
  const binary = mac.readUInt32BE(offset) & 0x7fffffff
  return String(binary % 10 ** digits).padStart(digits, '0')
}

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
  const given = Buffer.from(code)
  let found: number | undefined
  for (let step = current - window; step <= current + window; step++) {
    if (timingSafeEqual(Buffer.from(hotp(params.key, step, params.digits, params.algorithm)), given)) found = step
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
  const codes = Array.from({length: 2 * range + 2}, (_, i) => hotp(params.key, from + i, params.digits, params.algorithm))
  let best: number | undefined
  for (let i = 1; i < codes.length; i++) {
    if (codes[i - 1] !== first || codes[i] !== second) continue
    const step = from + i
    if (best === undefined || Math.abs(step - current) < Math.abs(best - current)) best = step
  }
  return best
}
