import {timingSafeEqual} from 'node:crypto'
import {digest, hmacOf, type Mac} from '../core/mac.js'

/**
 * RADIUS packets (RFC 2865), Message-Authenticator (RFC 3579 §3.2) and User-Password hiding
 * (RFC 2865 §5.2). Pure functions over Buffers, one per phase of handling a datagram: frame it
 * (decodePacket), check its Message-Authenticator (checkMessageAuthenticator), reveal the
 * password (revealPassword), build the answer (encodeResponse). Each failure has its own error.
 * The client side (encodeRequest, hidePassword, checkResponse) serves the tests and the bench.
 */

/** HMAC-MD5 under a shared secret, its padded blocks made once per secret (a client's secret is one Buffer for the responder's life). */
const macs = new WeakMap<Buffer, Mac>()
function hmacMd5(secret: Buffer): Mac {
  let mac = macs.get(secret)
  if (!mac) macs.set(secret, (mac = hmacOf('md5', secret)))
  return mac
}

export const CODE = {
  accessRequest: 1,
  accessAccept: 2,
  accessReject: 3,
  accountingRequest: 4,
  accountingResponse: 5,
  accessChallenge: 11,
  statusServer: 12,
} as const

export const ATTR = {
  userName: 1,
  userPassword: 2,
  chapPassword: 3,
  replyMessage: 18,
  state: 24,
  proxyState: 33,
  prompt: 76,
  messageAuthenticator: 80,
} as const

/** Prompt (76) values: 0 = No-Echo, 1 = Echo. */
export const PROMPT_NO_ECHO = 0

export const HEADER_LENGTH = 20
/** RFC 2865 §3: packets are 20..4096 octets. */
export const MAX_LENGTH = 4096
const MA_LENGTH = 16
const ZEROS = Buffer.alloc(MA_LENGTH)

export interface Attribute {
  type: number
  value: Buffer
}

export interface Packet {
  code: number
  id: number
  /** The Request Authenticator (requests) or Response Authenticator (responses). */
  authenticator: Buffer
  attributes: Attribute[]
  /** The datagram as received (needed to check the Message-Authenticator). */
  raw: Buffer
}

/** A datagram that is not a RADIUS packet, or not one we answer; `reason` says which rule failed. */
export class PacketError extends Error {
  constructor(readonly reason: string) {
    super(`bad RADIUS packet: ${reason}`)
    this.name = 'PacketError'
  }
}

const KNOWN_CODES = new Set<number>(Object.values(CODE))

/**
 * Phase 1, framing. RFC 2865 §3: octets past the Length field are padding and are ignored; a
 * datagram shorter than its Length is silently discarded; each attribute is Type, Length (≥ 2,
 * counting itself) and Value, and the attributes must fill the packet exactly.
 */
export function decodePacket(datagram: Buffer): Packet {
  if (datagram.length < HEADER_LENGTH) throw new PacketError(`too short (${datagram.length} octets, the header alone is 20)`)
  const code = datagram[0]
  if (!KNOWN_CODES.has(code)) throw new PacketError(`unknown code ${code}`)
  const length = datagram.readUInt16BE(2)
  if (length < HEADER_LENGTH || length > MAX_LENGTH) throw new PacketError(`length field ${length} is outside 20..4096`)
  if (length > datagram.length) throw new PacketError(`truncated (length field ${length}, ${datagram.length} octets received)`)
  const raw = datagram.subarray(0, length)
  const attributes: Attribute[] = []
  for (let at = HEADER_LENGTH; at < length; ) {
    if (at + 2 > length) throw new PacketError(`attribute header at octet ${at} runs past the end`)
    const type = raw[at]
    const len = raw[at + 1]
    if (len < 2) throw new PacketError(`attribute ${type} at octet ${at} has length ${len} (at least 2)`)
    if (at + len > length) throw new PacketError(`attribute ${type} at octet ${at} runs past the end`)
    attributes.push({type, value: raw.subarray(at + 2, at + len)})
    at += len
  }
  return {code, id: datagram[1], authenticator: raw.subarray(4, 20), attributes, raw}
}

export const findAttribute = (packet: {attributes: Attribute[]}, type: number): Buffer | undefined => packet.attributes.find((a) => a.type === type)?.value

const countAttribute = (packet: {attributes: Attribute[]}, type: number): number => packet.attributes.filter((a) => a.type === type).length

/** HMAC-MD5 of the packet with the Message-Authenticator's value zeroed (RFC 3579 §3.2). */
function messageAuthenticatorOf(raw: Buffer, authenticator: Buffer, secret: Buffer, valueOffset: number): Buffer {
  const copy = Buffer.from(raw)
  authenticator.copy(copy, 4)
  copy.fill(0, valueOffset, valueOffset + MA_LENGTH)
  return hmacMd5(secret)(copy)
}

/** Where the Message-Authenticator's value starts in `raw`, or undefined when it has none. */
function messageAuthenticatorOffset(raw: Buffer): number | undefined {
  const length = raw.readUInt16BE(2)
  for (let at = HEADER_LENGTH; at + 2 <= length && raw[at + 1] >= 2; at += raw[at + 1]) if (raw[at] === ATTR.messageAuthenticator) return at + 2
  return undefined
}

/**
 * Phase 2, the request's Message-Authenticator. Returns whether the request carried one; throws
 * when it is malformed, repeated or wrong (RFC 3579 §3.2: such a packet is silently discarded).
 */
export function checkMessageAuthenticator(packet: Packet, secret: Buffer): boolean {
  const count = countAttribute(packet, ATTR.messageAuthenticator)
  if (count === 0) return false
  if (count > 1) throw new PacketError('more than one Message-Authenticator')
  const value = findAttribute(packet, ATTR.messageAuthenticator)!
  if (value.length !== MA_LENGTH) throw new PacketError(`Message-Authenticator of ${value.length} octets (16 expected)`)
  // A request's header already holds its own authenticator: the HMAC runs over the packet with
  // the Message-Authenticator's value read as zeros, without copying the packet.
  const raw = packet.raw
  const at = messageAuthenticatorOffset(raw)!
  const expected = hmacMd5(secret)(raw.subarray(0, at), ZEROS, raw.subarray(at + MA_LENGTH))
  if (!timingSafeEqual(expected, value)) throw new PacketError('wrong Message-Authenticator (shared secret mismatch or forged packet)')
  return true
}

/** The keystream blocks of RFC 2865 §5.2: b1 = MD5(S + RA), bi = MD5(S + c(i-1)). */
function passwordXor(input: Buffer, secret: Buffer, authenticator: Buffer, hiding: boolean): Buffer {
  const out = Buffer.alloc(input.length)
  let previous = authenticator
  for (let at = 0; at < input.length; at += 16) {
    const b = digest('md5', secret, previous)
    for (let i = 0; i < 16; i++) out[at + i] = input[at + i] ^ b[i]
    previous = hiding ? out.subarray(at, at + 16) : input.subarray(at, at + 16)
  }
  return out
}

/**
 * Phase 3, the User-Password (RFC 2865 §5.2): 16..128 octets, a multiple of 16. The clear text
 * is padded with NULs, which are dropped here. The result is only ever handed to the login check.
 */
export function revealPassword(hidden: Buffer, secret: Buffer, authenticator: Buffer): string {
  const clear = revealOctets(hidden, secret, authenticator)
  const end = clear.indexOf(0)
  return clear.subarray(0, end < 0 ? clear.length : end).toString('utf8')
}

/** The clear octets of a User-Password, padding included (src/radius/proof.ts judges their shape). */
export function revealOctets(hidden: Buffer, secret: Buffer, authenticator: Buffer): Buffer {
  if (hidden.length < 16 || hidden.length > 128 || hidden.length % 16 !== 0)
    throw new PacketError(`User-Password of ${hidden.length} octets (16..128, a multiple of 16)`)
  return passwordXor(hidden, secret, authenticator, false)
}

/** The client side of §5.2 (tests, bench). */
export function hidePassword(password: string, secret: Buffer, authenticator: Buffer): Buffer {
  const clear = Buffer.from(password, 'utf8')
  if (clear.length > 128) throw new PacketError('password longer than 128 octets')
  const padded = Buffer.alloc(Math.max(16, Math.ceil(clear.length / 16) * 16))
  clear.copy(padded)
  return passwordXor(padded, secret, authenticator, true)
}

/**
 * A packet with a zeroed Message-Authenticator first (BlastRADIUS: first is safest), unsigned.
 * Written straight into one buffer (a responder frames every answer: no intermediate buffers).
 */
function frame(code: number, id: number, authenticator: Buffer, attributes: Attribute[], withMa: boolean): Buffer {
  let length = HEADER_LENGTH + (withMa ? 2 + MA_LENGTH : 0)
  for (const {type, value} of attributes) {
    if (value.length > 253) throw new PacketError(`attribute ${type} value of ${value.length} octets (at most 253)`)
    length += 2 + value.length
  }
  if (length > MAX_LENGTH) throw new PacketError(`packet of ${length} octets (at most 4096)`)
  const out = Buffer.alloc(length) // zeroed: the Message-Authenticator's value starts as zeros
  out[0] = code
  out[1] = id
  out.writeUInt16BE(length, 2)
  authenticator.copy(out, 4)
  let at = HEADER_LENGTH
  if (withMa) {
    out[at] = ATTR.messageAuthenticator
    out[at + 1] = 2 + MA_LENGTH
    at += 2 + MA_LENGTH
  }
  for (const {type, value} of attributes) {
    out[at] = type
    out[at + 1] = value.length + 2
    value.copy(out, at + 2)
    at += 2 + value.length
  }
  return out
}

/**
 * Phase 4, the answer: Message-Authenticator first, computed with the Request Authenticator in
 * the header (RFC 3579 §3.2), then the Response Authenticator MD5(Code+ID+Length+RequestAuth+
 * Attributes+Secret) over the signed packet (RFC 2865 §3).
 */
export function encodeResponse(request: {id: number; authenticator: Buffer}, code: number, attributes: Attribute[], secret: Buffer): Buffer {
  const out = frame(code, request.id, request.authenticator, attributes, true)
  hmacMd5(secret)(out).copy(out, HEADER_LENGTH + 2)
  digest('md5', out, secret).copy(out, 4)
  return out
}

/** The client side: an Access-Request (or `code`), with a Message-Authenticator unless `messageAuthenticator` is false. */
export function encodeRequest(opts: {
  id: number
  authenticator: Buffer
  attributes: Attribute[]
  secret: Buffer
  messageAuthenticator?: boolean
  code?: number
}): Buffer {
  const withMa = opts.messageAuthenticator !== false
  const out = frame(opts.code ?? CODE.accessRequest, opts.id, opts.authenticator, opts.attributes, withMa)
  if (withMa) hmacMd5(opts.secret)(out).copy(out, HEADER_LENGTH + 2)
  return out
}

/** The client side: checks a response's authenticators against the request it answers. */
export function checkResponse(response: Buffer, requestAuthenticator: Buffer, secret: Buffer): Packet {
  const packet = decodePacket(response)
  const copy = Buffer.from(packet.raw)
  requestAuthenticator.copy(copy, 4)
  const expected = digest('md5', copy, secret)
  if (!timingSafeEqual(expected, packet.authenticator)) throw new PacketError('wrong Response Authenticator')
  const offset = messageAuthenticatorOffset(packet.raw)
  if (offset === undefined) throw new PacketError('response without Message-Authenticator')
  const ma = messageAuthenticatorOf(packet.raw, requestAuthenticator, secret, offset)
  if (!timingSafeEqual(ma, packet.raw.subarray(offset, offset + MA_LENGTH))) throw new PacketError('wrong Message-Authenticator in the response')
  return packet
}

export const text = (value: string): Buffer => Buffer.from(value, 'utf8')
export const integer = (value: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(value >>> 0)
  return b
}
