import {randomBytes, randomInt, type ScryptOptions, scrypt, scryptSync, timingSafeEqual} from 'node:crypto'
import {base32Decode, base32Encode} from './base32.js'
import type {HashedCodes} from './model.js'

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/** A fresh TOTP key: 20 random bytes (RFC 4226's recommended length), base32. */
export const newSecret = (): string => base32Encode(randomBytes(20))

/** Secret bytes for HMAC, or undefined when `secret` is not base32 of 10–64 bytes. */
export function secretKey(secret: string): Buffer | undefined {
  const key = base32Decode(secret)
  return key && key.length >= 10 && key.length <= 64 ? key : undefined
}

/** `groups` groups of five base32 characters joined by dashes, e.g. `K3JQ7-MX2PA`. */
export function oneTimeCode(groups: number): string {
  const parts: string[] = []
  for (let g = 0; g < groups; g++) {
    let part = ''
    for (let i = 0; i < 5; i++) part += B32[randomInt(32)]
    parts.push(part)
  }
  return parts.join('-')
}

/** One-time codes are compared case-insensitively, with or without dashes and spaces. */
export const normalizeOneTimeCode = (code: string): string => code.replace(/[\s-]/g, '').toUpperCase()

// scrypt with a modest cost: the codes carry 50+ bits of entropy, the hash only has to make an
// offline search of a leaked store pointless, and a login must still answer quickly.
const SCRYPT: ScryptOptions = {N: 4096, r: 8, p: 1}
const hash = (code: string, salt: string): string => scryptSync(normalizeOneTimeCode(code), Buffer.from(salt, 'base64'), 32, SCRYPT).toString('base64')

export function hashCodes(codes: string[]): HashedCodes {
  const salt = randomBytes(16).toString('base64')
  return {salt, hashes: codes.map((c) => hash(c, salt))}
}

/**
 * hashCodes with the same salt, cost and result, the codes hashed side by side on libuv's
 * threads (every core) instead of one after another on this one: ten recovery codes take the
 * time of about five on two cores.
 */
export async function hashCodesAsync(codes: string[]): Promise<HashedCodes> {
  const salt = randomBytes(16).toString('base64')
  const one = (code: string) =>
    new Promise<string>((done, fail) =>
      scrypt(normalizeOneTimeCode(code), Buffer.from(salt, 'base64'), 32, SCRYPT, (error, key) => (error ? fail(error) : done(key.toString('base64')))),
    )
  return {salt, hashes: await Promise.all(codes.map(one))}
}

/** Index of the stored hash that `code` matches, or -1. Compares every hash in constant time. */
export function findCode(stored: HashedCodes, code: string): number {
  const given = Buffer.from(hash(code, stored.salt), 'base64')
  let found = -1
  stored.hashes.forEach((h, i) => {
    const candidate = Buffer.from(h, 'base64')
    if (candidate.length === given.length && timingSafeEqual(candidate, given) && found < 0) found = i
  })
  return found
}
