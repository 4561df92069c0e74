import {createDecipheriv, createHmac, pbkdf2Sync, timingSafeEqual} from 'node:crypto'
import {usageError} from './errors.js'
import {DIGITS, type Digits, INTERVALS, type Interval, maxDriftSteps} from './model.js'
import type {Algorithm} from './totp.js'
import {checkUsername, quote} from './validate.js'
import {at, child, children, parseXml, XmlError, type XmlElement} from './xml.js'

/**
 * PSKC (RFC 6030), the file of seeds that comes with hardware tokens: plain, encrypted with a
 * pre-shared AES-128 key (§6.1), or with a key derived from a password by PBKDF2 (§6.2). Every
 * encrypted value's MAC (HMAC over IV + ciphertext, with the MAC key the file carries encrypted)
 * is checked before it is decrypted. Errors name the file and a token's serial, never a seed.
 */

const PSKC_NS = 'urn:ietf:params:xml:ns:keyprov:pskc'
const AES128_CBC = 'http://www.w3.org/2001/04/xmlenc#aes128-cbc'
const PBKDF2 = 'http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2'
const TOTP = /(^|[:#/])totp$/i
const HOTP = /(^|[:#/])hotp$/i
/** hmac-sha1 (xmldsig), hmac-sha224 … hmac-sha512 (xmldsig-more). */
const HMAC_URI = /^http:\/\/www\.w3\.org\/(2000\/09\/xmldsig|2001\/04\/xmldsig-more)#hmac-(sha1|sha224|sha256|sha384|sha512)$/

/** What decrypts the file: the 16 bytes of a pre-shared key, or a password. */
export interface PskcSecrets {
  key?: Buffer
  password?: string
}

/** One token of the file. `problem`: why it cannot be imported (only an error if it is assigned). */
export interface PskcToken {
  serial: string
  secret: Buffer
  interval: Interval
  digits: Digits
  algorithm: Algorithm
  /** The token's drift in steps as the file records it (TimeDrift), 0 when absent. */
  drift: number
  problem?: string
}

/** `--pskc-key-file`'s content: 16 raw bytes, or 32 hex digits (a newline after them allowed). */
export function pskcKey(raw: Buffer, file: string): Buffer {
  if (raw.length === 16) return raw
  const text = raw.toString('latin1').trim()
  if (/^[0-9a-fA-F]{32}$/.test(text)) return Buffer.from(text, 'hex')
  throw usageError(`${file}: expected a 16-byte AES-128 key: 16 raw bytes or 32 hex digits`)
}

const b64 = (node: XmlElement | undefined): Buffer | undefined => {
  const text = node?.text.replace(/\s+/g, '')
  return text && /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, 'base64') : undefined
}

export function readPskc(text: string, file: string, secrets: PskcSecrets): PskcToken[] {
  const fail = (reason: string): never => {
    throw usageError(`${file}: ${reason}`)
  }
  let root: XmlElement
  try {
    root = parseXml(text)
  } catch (error) {
    if (error instanceof XmlError) return fail(`not valid XML: ${error.message}`)
    throw error
  }
  if (root.name !== 'KeyContainer' || root.ns !== PSKC_NS) return fail(`not a PSKC file (expected a KeyContainer in ${PSKC_NS})`)
  if (root.attrs.Version !== '1.0') fail(`PSKC version ${quote(root.attrs.Version ?? '')} is not supported (1.0)`)

  const encrypted = hasEncrypted(root)
  const key = encrypted ? encryptionKey(root, secrets, fail) : undefined
  const macKey = key && macKeyOf(root, key, fail)

  /** A value's bytes: PlainValue (base64), or EncryptedValue checked by its MAC then decrypted. */
  const value = (holder: XmlElement, what: string): Buffer | undefined => {
    const plain = child(holder, 'PlainValue')
    if (plain) return what === 'Secret' ? (b64(plain) ?? fail(`${what}: PlainValue is not base64`)) : Buffer.from(plain.text.trim())
    const enc = child(holder, 'EncryptedValue')
    if (!enc) return undefined
    if (!key || !macKey) return fail('an encrypted value, but no key to decrypt it')
    const data = cipherValue(enc, fail)
    const mac = b64(child(holder, 'ValueMAC')) ?? fail(`an encrypted ${what} without a ValueMAC: it cannot be checked`)
    const expected = createHmac(macKey.hash, macKey.key).update(data).digest()
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) fail('the MAC does not match: wrong key or password, or the file was altered')
    const clear = aes128cbc(key, data) ?? fail('a value does not decrypt: wrong key or password')
    if (what === 'Secret') return clear
    const ascii = clear.toString('latin1') // an encrypted integer: ASCII digits, or big-endian bytes
    return Buffer.from(/^\d+$/.test(ascii) ? ascii : BigInt(`0x${clear.toString('hex') || '0'}`).toString())
  }

  const tokens: PskcToken[] = []
  for (const pkg of children(root, 'KeyPackage')) {
    const keyNode = child(pkg, 'Key')
    if (!keyNode) continue
    const serial = (at(pkg, 'DeviceInfo/SerialNo')?.text.trim() || keyNode.attrs.Id) ?? fail('a key without a SerialNo or Id')
    const where = `token ${quote(serial)}`
    const data = child(keyNode, 'Data')
    const secretNode = child(data, 'Secret')
    const secret = (secretNode && value(secretNode, 'Secret')) ?? Buffer.alloc(0) // no seed: a problem only if assigned
    const int = (name: string): number | undefined => {
      const node = child(data, name)
      const v = node && value(node, name)?.toString('latin1').trim()
      if (v === undefined) return undefined
      return /^-?\d+$/.test(v) ? Number(v) : fail(`${where}: ${name} is not a whole number`)
    }
    const problems: string[] = []
    const algorithm = keyNode.attrs.Algorithm ?? ''
    if (HOTP.test(algorithm)) problems.push('counter-based (HOTP) tokens cannot be imported: only time-based (TOTP)')
    else if (!TOTP.test(algorithm)) problems.push(`algorithm ${quote(algorithm)} is not TOTP`)
    const format = at(keyNode, 'AlgorithmParameters/ResponseFormat')
    const digits = Number(format?.attrs.Length ?? 6)
    if (!DIGITS.includes(digits as Digits)) problems.push(`${digits}-digit codes are not supported (6, 7 or 8)`)
    if (format?.attrs.Encoding && format.attrs.Encoding !== 'DECIMAL') problems.push(`${format.attrs.Encoding} codes are not supported (DECIMAL)`)
    const interval = int('TimeInterval') ?? 30
    if (!INTERVALS.includes(interval as Interval)) problems.push(`a time step of ${interval} s is not supported (30 or 60)`)
    if ((int('Time') ?? 0) !== 0) problems.push('a start time (Time) other than 0 is not supported')
    const suite = at(keyNode, 'AlgorithmParameters/Suite')?.text.trim() || 'SHA1'
    const hash = /^(?:HMAC-)?SHA-?(1|256|512)$/i.exec(suite)
    if (!hash) problems.push(`hash ${quote(suite)} is not supported (SHA1, SHA256, SHA512)`)
    if (secret.length === 0) problems.push('the file holds no secret for it')
    else if (secret.length < 10 || secret.length > 64) problems.push(`a ${secret.length}-byte secret is not supported (10-64 bytes)`)
    const refusal = policyRefusal(child(keyNode, 'Policy'))
    if (refusal) problems.push(refusal)
    const drift = int('TimeDrift') ?? 0
    const limit = maxDriftSteps(interval)
    tokens.push({
      serial,
      secret,
      interval: interval as Interval,
      digits: digits as Digits,
      algorithm: `SHA${hash?.[1] ?? '1'}` as Algorithm,
      drift: Math.max(-limit, Math.min(limit, drift)),
      ...(problems.length > 0 ? {problem: problems.join('; ')} : {}),
    })
  }
  if (tokens.length === 0) fail('no keys in it')
  return tokens
}

/**
 * RFC 6030 §5: a Policy with anything the recipient does not understand means the key may not be
 * used. Understood: a validity period, and KeyUsage (which must allow OTP). A PIN policy or a
 * limited number of transactions cannot be enforced by a login check: refused.
 */
function policyRefusal(policy: XmlElement | undefined, now = Date.now()): string | undefined {
  if (!policy) return undefined
  if (Object.keys(policy.attrs).length > 0) return 'a Policy with attributes tfactl does not understand (RFC 6030 §5: not permitted)'
  const usages = children(policy, 'KeyUsage').map((u) => u.text.trim())
  if (usages.length > 0 && !usages.includes('OTP')) return 'its Policy does not allow OTP use'
  for (const c of policy.children) {
    if (c.name === 'KeyUsage') continue
    if (c.name !== 'StartDate' && c.name !== 'ExpiryDate') return `its Policy holds ${c.name}, which tfactl cannot enforce (RFC 6030 §5: not permitted)`
    const at = Date.parse(c.text.trim())
    if (Number.isNaN(at)) return `its Policy ${c.name} is not a date`
    if (c.name === 'StartDate' && now < at) return `it may not be used before ${c.text.trim()} (Policy StartDate)`
    if (c.name === 'ExpiryDate' && now > at) return `it expired on ${c.text.trim()} (Policy ExpiryDate)`
  }
  return undefined
}

function hasEncrypted(node: XmlElement): boolean {
  return node.name === 'EncryptedValue' || node.children.some(hasEncrypted)
}

function cipherValue(enc: XmlElement, fail: (r: string) => never): Buffer {
  const method = child(enc, 'EncryptionMethod')?.attrs.Algorithm
  if (method !== AES128_CBC) fail(`encryption ${quote(method ?? '(none)')} is not supported (AES-128-CBC)`)
  const data = b64(at(enc, 'CipherData/CipherValue')) ?? fail('an encrypted value without a base64 CipherValue')
  if (data.length < 32 || data.length % 16 !== 0) fail('an encrypted value of the wrong length for AES-128-CBC (IV + whole blocks)')
  return data
}

/** AES-128-CBC with the IV in front (RFC 6030 §6.1); undefined when the padding is wrong (the wrong key). */
function aes128cbc(key: Buffer, data: Buffer): Buffer | undefined {
  try {
    const d = createDecipheriv('aes-128-cbc', key, data.subarray(0, 16))
    return Buffer.concat([d.update(data.subarray(16)), d.final()])
  } catch {
    return undefined
  }
}

/** The key that decrypts the file's values: the pre-shared one, or one derived from the password. */
function encryptionKey(root: XmlElement, secrets: PskcSecrets, fail: (r: string) => never): Buffer {
  const derived = at(root, 'EncryptionKey/DerivedKey')
  if (!derived) {
    if (!secrets.key) fail('encrypted with a pre-shared key: give it with --pskc-key-file')
    return secrets.key!
  }
  const method = child(derived, 'KeyDerivationMethod')
  if (method?.attrs.Algorithm !== PBKDF2) fail(`key derivation ${quote(method?.attrs.Algorithm ?? '(none)')} is not supported (PBKDF2)`)
  if (secrets.password === undefined) fail('encrypted with a password: give it with --pskc-password - (on stdin)')
  const params = child(method, 'PBKDF2-params') ?? fail('PBKDF2 without its parameters')
  const salt = b64(at(params, 'Salt/Specified')) ?? fail('PBKDF2 without a salt')
  const count = Number(child(params, 'IterationCount')?.text.trim())
  if (!Number.isInteger(count) || count < 1 || count > 10_000_000) fail('PBKDF2 IterationCount must be a whole number from 1 to 10000000')
  const length = Number(child(params, 'KeyLength')?.text.trim() || 16)
  if (length !== 16) fail(`a derived key of ${length} bytes is not supported (16, for AES-128)`)
  const prf = child(params, 'PRF')?.attrs.Algorithm
  const hash = prf ? (HMAC_URI.exec(prf)?.[2] ?? fail(`PBKDF2 PRF ${quote(prf)} is not supported`)) : 'sha1'
  return pbkdf2Sync(Buffer.from(secrets.password!, 'utf8'), salt, count, 16, hash)
}

/** The MAC key, decrypted with the encryption key, and its hash. Encrypted values need one. */
function macKeyOf(root: XmlElement, key: Buffer, fail: (r: string) => never): {key: Buffer; hash: string} {
  const method = child(root, 'MACMethod') ?? fail('encrypted values without a MACMethod cannot be checked')
  const hash = HMAC_URI.exec(method.attrs.Algorithm ?? '')?.[2] ?? fail(`MAC algorithm ${quote(method.attrs.Algorithm ?? '(none)')} is not supported`)
  const enc = child(method, 'MACKey') ?? fail('MACMethod without a MACKey')
  const macKey = aes128cbc(key, cipherValue(enc, fail)) ?? fail('the MAC key does not decrypt: wrong key or password')
  return {key: macKey, hash}
}

/** An assignment of tokens to users: `serial,user` lines (# comments, blank lines skipped). */
export function parseAssignments(text: string, file: string): Array<{serial: string; user: string; line: number}> {
  const out: Array<{serial: string; user: string; line: number}> = []
  const serials = new Set<string>()
  const users = new Set<string>()
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const where = `${file}:${i + 1}: `
    const parts = line.split(',').map((p) => p.trim())
    if (parts.length !== 2 || parts[0] === '') throw usageError(`${where}expected serial,user`)
    const [serial, user] = parts
    checkUsername(user, where)
    if (serials.has(serial)) throw usageError(`${where}serial ${quote(serial)} is assigned twice`)
    if (users.has(user)) throw usageError(`${where}${user} is given two tokens`)
    serials.add(serial)
    users.add(user)
    out.push({serial, user, line: i + 1})
  })
  if (out.length === 0) throw usageError(`${file}: no assignments (serial,user lines)`)
  return out
}

/** The assigned tokens, each importable, or the first problem as FILE:LINE. */
export function assignTokens(tokens: PskcToken[], assignments: ReturnType<typeof parseAssignments>, file: string, pskcFile: string) {
  return assignments.map(({serial, user, line}) => {
    const found = tokens.filter((t) => t.serial === serial)
    if (found.length === 0) throw usageError(`${file}:${line}: no token with serial ${quote(serial)} in ${pskcFile}`)
    if (found.length > 1) throw usageError(`${file}:${line}: ${pskcFile} holds serial ${quote(serial)} more than once`)
    if (found[0].problem) throw usageError(`${file}:${line}: token ${quote(serial)}: ${found[0].problem}`)
    return {user, token: found[0]}
  })
}
