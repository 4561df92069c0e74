import * as crypto from 'node:crypto'
import {createHash, createHmac, randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {digest, digestWith, hmacOf, hmacWith, type OneShot} from '../../src/core/mac.js'

// The login path's digests and HMACs (one-shot digests, an HMAC's padded blocks kept) give
// Node's own bytes: keys shorter than, as long as and longer than a block, messages in parts.
const ALGORITHMS = ['md5', 'sha1', 'sha256', 'sha512']

// Node 20.20 has crypto.hash; the same bytes without it (Node before 20.12: hashing contexts).
const oneShot = (crypto as {hash?: OneShot}).hash
const WAYS = [
  {way: 'one-shot digests', digest: (a: string, ...p: Buffer[]) => digestWith(oneShot, a, p), hmacOf: (a: string, k: Buffer) => hmacWith(oneShot, a, k)},
  {way: 'hashing contexts', digest: (a: string, ...p: Buffer[]) => digestWith(undefined, a, p), hmacOf: (a: string, k: Buffer) => hmacWith(undefined, a, k)},
]

describe('digest and hmacOf', () => {
  it('use the one-shot digest on this Node', () => {
    expect(oneShot).toBeTypeOf('function')
    const key = randomBytes(20)
    expect(hmacOf('sha1', key)(Buffer.from('x')).equals(hmacWith(oneShot, 'sha1', key)(Buffer.from('x')))).toBe(true)
    expect(digest('md5', Buffer.from('x')).equals(digestWith(oneShot, 'md5', [Buffer.from('x')]))).toBe(true)
  })

  it.each(WAYS.flatMap((w) => ALGORITHMS.map((algorithm) => ({...w, algorithm}))))(
    '$algorithm, $way: digest of parts equals createHash',
    ({algorithm, digest}) => {
      for (const lengths of [[0], [1], [16, 20], [64, 0, 3], [200]]) {
        const parts = lengths.map((n) => randomBytes(n))
        const h = createHash(algorithm)
        for (const p of parts) h.update(p)
        expect(digest(algorithm, ...parts).equals(h.digest())).toBe(true)
      }
    },
  )

  it.each(WAYS.flatMap((w) => ALGORITHMS.map((algorithm) => ({...w, algorithm}))))('$algorithm, $way: hmacOf equals createHmac', ({algorithm, hmacOf}) => {
    for (const keyLength of [0, 1, 16, 63, 64, 65, 127, 128, 129, 300]) {
      const key = randomBytes(keyLength)
      const mac = hmacOf(algorithm, key)
      for (const lengths of [[0], [8], [20, 16, 44], [1000]]) {
        const parts = lengths.map((n) => randomBytes(n))
        const h = createHmac(algorithm, key)
        for (const p of parts) h.update(p)
        expect(mac(...parts).equals(h.digest())).toBe(true)
      }
    }
  })

  it('keeps its own copy of the padded key: the same MAC every time', () => {
    const mac = hmacOf('md5', Buffer.from('secret'))
    const message = Buffer.from('message')
    expect(mac(message).equals(mac(message))).toBe(true)
  })
})
