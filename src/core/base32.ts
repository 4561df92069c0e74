const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
/** Base32 as tfactl writes it (and as the login path decodes it every time): nothing to clean. */
const PLAIN = /^[A-Z2-7]*$/

/** RFC 4648 base32 without padding, as authenticator apps expect in otpauth URIs. */
export function base32Encode(bytes: Uint8Array): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31]
  return out
}

/**
 * Decodes base32 as people type it: case-insensitive, spaces, dashes and `=` padding ignored.
 * Returns undefined when a character is outside the alphabet.
 */
export function base32Decode(text: string): Buffer | undefined {
  const clean = PLAIN.test(text) ? text : text.replace(/[\s=-]/g, '').replace(/[a-z]/g, (c) => c.toUpperCase())
  const out = Buffer.allocUnsafe(Math.floor((clean.length * 5) / 8)) // every octet written below
  let n = 0
  let bits = 0
  let value = 0
  for (let i = 0; i < clean.length; i++) {
    const index = ALPHABET.indexOf(clean[i])
    if (index < 0) return undefined
    value = ((value << 5) | index) & 0xffff
    bits += 5
    if (bits >= 8) {
      out[n++] = (value >>> (bits - 8)) & 0xff
      bits -= 8
    }
  }
  return out
}
