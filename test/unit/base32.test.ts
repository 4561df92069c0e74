import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {base32Decode, base32Encode} from '../../src/core/base32.js'

// RFC 4648 section 10, BASE32 test vectors, with the `=` padding as printed there.
const RFC4648 = [
  {text: '', padded: ''},
  {text: 'f', padded: 'MY======'},
  {text: 'fo', padded: 'MZXQ===='},
  {text: 'foo', padded: 'MZXW6==='},
  {text: 'foob', padded: 'MZXW6YQ='},
  {text: 'fooba', padded: 'MZXW6YTB'},
  {text: 'foobar', padded: 'MZXW6YTBOI======'},
]
const unpadded = (s: string) => s.replace(/=+$/, '')

describe('base32Encode', () => {
  it.each(RFC4648)('encodes "$text" as the RFC 4648 vector without padding', ({text, padded}) => {
    expect(base32Encode(Buffer.from(text, 'ascii'))).toBe(unpadded(padded))
  })

  it('uses only the RFC 4648 alphabet', () => {
    expect(base32Encode(randomBytes(200))).toMatch(/^[A-Z2-7]+$/)
  })
})

describe('base32Decode', () => {
  it.each(RFC4648)('decodes the RFC 4648 vector for "$text" without padding', ({text, padded}) => {
    expect(base32Decode(unpadded(padded))?.toString('ascii')).toBe(text)
  })

  it.each(RFC4648)('decodes the RFC 4648 vector for "$text" with padding', ({text, padded}) => {
    expect(base32Decode(padded)?.toString('ascii')).toBe(text)
  })

  it.each(Array.from({length: 65}, (_, n) => n))('round-trips %i random bytes', (n) => {
    const bytes = randomBytes(n)
    expect(base32Decode(base32Encode(bytes))?.equals(bytes)).toBe(true)
  })

  it('accepts lowercase', () => {
    expect(base32Decode('mzxw6ytboi')?.toString('ascii')).toBe('foobar')
    expect(base32Decode('MzXw6YtBoI')?.toString('ascii')).toBe('foobar')
  })

  it('ignores spaces, tabs and newlines', () => {
    expect(base32Decode('MZXW 6YTB OI')?.toString('ascii')).toBe('foobar')
    expect(base32Decode(' MZXW\t6YTB\nOI ')?.toString('ascii')).toBe('foobar')
  })

  it('ignores dashes', () => {
    expect(base32Decode('MZXW-6YTB-OI')?.toString('ascii')).toBe('foobar')
  })

  it('ignores padding in any amount', () => {
    expect(base32Decode('MZXW6YTBOI======')?.toString('ascii')).toBe('foobar')
    expect(base32Decode('MZXW6YTBOI=')?.toString('ascii')).toBe('foobar')
  })

  it.each(['0', '1', '8', '9', '!', '_', '+', '/', '.', 'é', 'É', '€', '\u0000', 'MZXW6YTBO1', 'MZXW6?TBOI'])('refuses the character(s) in %j', (text) => {
    expect(base32Decode(text)).toBeUndefined()
  })

  // toUpperCase() would map some non-ASCII letters onto the alphabet ('ß' -> 'SS', 'ı' -> 'I').
  it('refuses non-ASCII letters that uppercase into the alphabet', () => {
    expect(base32Decode('ß')).toBeUndefined()
    expect(base32Decode('ı')).toBeUndefined()
  })
})
