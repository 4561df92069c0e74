import {revealOctets} from './packet.js'

/**
 * What a request proves about its sender. A request without a Message-Authenticator (what
 * pam_radius_auth 2.0 sends) carries no signature; the only thing in it that depends on the
 * shared secret is the hidden User-Password (RFC 2865 §5.2). Under the right secret it reveals
 * what the client hid: a password padded with NULs to a multiple of 16 octets. Under any other
 * secret, or when it is random octets, it reveals noise, which is almost never shaped like that.
 * So a request proves the secret when it is signed, or when its User-Password reveals:
 *
 * - `text` (the first round of challenge mode: the Unix password the PAM stack already checked):
 *   UTF-8 without control characters, then the NUL padding and nothing else. Random octets pass
 *   with a probability of about 2.7e-6 per request.
 * - `code` (code mode, and the answer to a challenge): what a code, a recovery code or a bypass
 *   code looks like: ASCII letters, digits, dashes and spaces, then the padding (empty is fine).
 *   Random octets pass with a probability of about 2.4e-10 per request.
 *
 * A request that proves nothing is dropped before anything else looks at it: it reaches no
 * login decision, no State, no lockout counter, no audit line and no retransmission cache, and
 * it gets no answer, whoever the user is.
 */

export type Shape = 'text' | 'code'

// C0 controls, DEL, C1 controls: nothing a person types at a password or code prompt.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/
const CODE_SHAPE = /^[0-9A-Za-z -]*$/
const utf8 = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true})

/** The clear text of a hidden User-Password when it is shaped as `shape` under `secret`, else undefined. */
export function provenPassword(hidden: Buffer, secret: Buffer, authenticator: Buffer, shape: Shape): string | undefined {
  if (hidden.length < 16 || hidden.length > 128 || hidden.length % 16 !== 0) return undefined
  const clear = revealOctets(hidden, secret, authenticator)
  const end = clear.indexOf(0)
  const length = end < 0 ? clear.length : end
  // The padding (RFC 2865 §5.2): NULs only, up to the next multiple of 16 and no further.
  if (clear.length !== Math.max(16, Math.ceil(length / 16) * 16) || clear.subarray(length).some((octet) => octet !== 0)) return undefined
  let password: string
  try {
    password = utf8.decode(clear.subarray(0, length))
  } catch {
    return undefined
  }
  if (shape === 'code' ? !CODE_SHAPE.test(password) : CONTROL.test(password)) return undefined
  return password
}
