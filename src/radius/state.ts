import {createHmac, randomBytes, timingSafeEqual} from 'node:crypto'

/**
 * The State attribute of an Access-Challenge (challenge mode). It is self-contained, so that
 * any responder sharing the clients file can take the answer (pam_radius may fail over to the
 * next server): version, expiry, a random nonce, and an HMAC that binds them to the user and
 * the client (its network and shared secret). A responder remembers the nonces it has taken
 * until they expire, so a State is good for one answer; a State replayed to another responder
 * still needs a fresh code, which the store refuses to take twice.
 *
 *   1 octet version | 4 octets expiry (Unix seconds) | 16 octets nonce | 16 octets HMAC-SHA256/128
 */

export const STATE_TTL_SECONDS = 300
const VERSION = 1
export const STATE_LENGTH = 1 + 4 + 16 + 16

export type StateProblem = 'state_malformed' | 'state_forged' | 'state_expired' | 'state_replayed'

export class StateBook {
  /** nonce (hex) → expiry (ms): the States already answered. */
  private readonly used = new Map<string, number>()

  constructor(
    private readonly ttlSeconds = STATE_TTL_SECONDS,
    private readonly now: () => number = Date.now,
  ) {}

  private static mac(key: Buffer, body: Buffer, user: string, client: string): Buffer {
    return createHmac('sha256', key).update(body).update(`\0${user}\0${client}`).digest().subarray(0, 16)
  }

  /** A new State for `user` challenged through `client` (its network), keyed by the client's secret. */
  issue(key: Buffer, user: string, client: string): Buffer {
    const body = Buffer.alloc(1 + 4 + 16)
    body[0] = VERSION
    body.writeUInt32BE(Math.floor(this.now() / 1000) + this.ttlSeconds, 1)
    randomBytes(16).copy(body, 5)
    return Buffer.concat([body, StateBook.mac(key, body, user, client)])
  }

  /** Takes a State given back with an answer: undefined when it is good (and now used up), else why not. */
  take(state: Buffer, key: Buffer, user: string, client: string): StateProblem | undefined {
    if (state.length !== STATE_LENGTH || state[0] !== VERSION) return 'state_malformed'
    const body = state.subarray(0, 21)
    if (!timingSafeEqual(StateBook.mac(key, body, user, client), state.subarray(21))) return 'state_forged'
    const expires = state.readUInt32BE(1) * 1000
    const now = this.now()
    if (expires <= now || expires > now + (this.ttlSeconds + 60) * 1000) return 'state_expired'
    this.prune(now)
    const nonce = state.subarray(5, 21).toString('hex')
    if (this.used.has(nonce)) return 'state_replayed'
    this.used.set(nonce, expires)
    return undefined
  }

  private prune(now: number): void {
    if (this.used.size < 1024) return
    for (const [nonce, expires] of this.used) if (expires <= now) this.used.delete(nonce)
  }

  get size(): number {
    return this.used.size
  }
}
