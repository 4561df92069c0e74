import {usageError} from './errors.js'

const USERNAME = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}$/
// Printable: no control/format characters; no ':' (the Key Uri Format separates issuer:account).
const ISSUER = /^[^\p{C}\p{Zl}\p{Zp}:]{1,64}$/u

/** Quotes user input for an error message so that control characters cannot reach the terminal. */
export const quote = (text: string): string => JSON.stringify(text)

/** Usernames end up in PAM users files: only a safe, portable subset passes. */
export function checkUsername(name: string, where = ''): string {
  if (!USERNAME.test(name) || name === '.' || name === '..')
    throw usageError(`${where}invalid username ${quote(name)}: use 1-32 characters of A-Z a-z 0-9 . _ - not starting with -`)
  return name
}

export function checkIssuer(issuer: string): string {
  if (!ISSUER.test(issuer) || [...issuer].length > 64) throw usageError(`invalid issuer ${quote(issuer)}: use 1-64 printable characters without ':'`)
  return issuer
}

/** Codes may be typed with spaces (`123 456`); everything else is judged as given. */
export const normalizeCode = (code: string): string => code.replace(/\s+/g, '')
