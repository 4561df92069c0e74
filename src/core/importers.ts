import {secretKey} from './codes.js'
import {base32Encode} from './base32.js'
import {usageError} from './errors.js'
import type {Digits, Interval} from './model.js'
import type {Algorithm} from './totp.js'
import {checkUsername} from './validate.js'

/** An enrolment brought over from another tool, before it is stored. */
export interface Imported {
  user: string
  secret: string
  interval: Interval
  digits: Digits
  /** One-time codes the old tool gave the user (google-authenticator's scratch codes). */
  scratchCodes: string[]
  /** SHA1 unless the source says otherwise (PSKC). */
  algorithm?: Algorithm
  /** The hardware token's serial (PSKC). */
  serial?: string
  /** The token's drift in steps, as the source recorded it (PSKC TimeDrift). */
  drift?: number
}

/**
 * A FILE:LINE error. Messages never quote a field of the line: a line with a field missing or
 * out of place may hold a secret anywhere, and errors reach terminals, logs and CI output.
 */
const fail = (file: string, line: number, reason: string): never => {
  throw usageError(`${file}:${line}: ${reason}`)
}

/** A base32 secret typed or piped in: 10–64 bytes once decoded. Returns it in canonical form. */
export function checkSecret(text: string, where: string): string {
  const key = secretKey(text.trim())
  if (!key) throw usageError(`${where}: not a base32 secret of 10-64 bytes (letters A-Z and digits 2-7)`)
  return base32Encode(key)
}

/**
 * `~/.google_authenticator` as the google-authenticator CLI writes it: the base32 secret, then
 * option lines starting with `"`, then 8-digit scratch codes. Counter-based (HOTP) files are refused.
 */
export function parseGoogleAuthenticator(text: string, file: string, user: string): Imported {
  const lines = text.split('\n')
  const secret = checkSecret(lines[0] ?? '', `${file}:1`)
  let interval: Interval = 30
  const scratchCodes: string[] = []
  lines.slice(1).forEach((raw, i) => {
    const n = i + 2
    const line = raw.trim()
    if (line === '') return
    if (line.startsWith('"')) {
      const [option, value] = line.slice(1).trim().split(/\s+/)
      if (option === 'HOTP_COUNTER') fail(file, n, 'counter-based (HOTP) enrolments cannot be imported: only time-based (TOTP)')
      if (option === 'STEP_SIZE') {
        if (value !== '30' && value !== '60') fail(file, n, 'this STEP_SIZE is not supported (30 or 60)')
        interval = Number(value) as Interval
      }
      return
    }
    if (!/^\d{8}$/.test(line)) fail(file, n, 'expected an 8-digit scratch code or a " option line')
    scratchCodes.push(line)
  })
  return {user: checkUsername(user), secret, interval, digits: 6, scratchCodes}
}

const TOTP_TYPE = /^HOTP\/T(30|60)(?:\/([678]))?$/

/**
 * A pam_oath users file: `HOTP/T30[/6] user - hexsecret [counter lastotp time]` per line.
 * Only time-based lines are accepted; `#` comments and blank lines are skipped.
 */
export function parseUsersOath(text: string, file: string): Imported[] {
  const seen = new Set<string>()
  const out: Imported[] = []
  text.split('\n').forEach((raw, i) => {
    const n = i + 1
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const [type, user, password, hex] = line.split(/\s+/)
    const match = TOTP_TYPE.exec(type)
    if (!match)
      fail(
        file,
        n,
        type.startsWith('HOTP') && !type.startsWith('HOTP/T')
          ? 'counter-based HOTP lines cannot be imported: only HOTP/T30 or HOTP/T60'
          : 'field 1 is not a supported type: expected HOTP/T30 or HOTP/T60, optionally /6, /7 or /8',
      )
    if (!user) fail(file, n, 'missing username')
    try {
      checkUsername(user)
    } catch {
      fail(file, n, 'field 2 is not a valid username (1-32 characters of A-Z a-z 0-9 . _ - not starting with -)')
    }
    if (password !== '-') fail(file, n, 'a static password (field 3) is not supported: expected -')
    if (!hex || !/^([0-9a-fA-F]{2}){10,64}$/.test(hex)) fail(file, n, 'expected a hex secret of 10-64 bytes')
    if (seen.has(user)) fail(file, n, `${user} appears twice`)
    seen.add(user)
    out.push({
      user,
      secret: base32Encode(Buffer.from(hex, 'hex')),
      interval: Number(match![1]) as Interval,
      digits: Number(match![2] ?? 6) as Digits,
      scratchCodes: [],
    })
  })
  return out
}
