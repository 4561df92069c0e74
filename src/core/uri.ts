import type {Algorithm} from './totp.js'

export interface UriParams {
  issuer: string
  user: string
  host: string
  secret: string
  interval: number
  digits: number
  algorithm: Algorithm
}

/**
 * The Key Uri Format URI that authenticator apps scan:
 * otpauth://totp/<issuer>:<user>@<host>?secret=…&issuer=…[&algorithm][&digits][&period]
 * Parameters that equal the apps' defaults are left out (some apps mishandle them).
 */
export function otpauthUri(p: UriParams): string {
  const label = `${encodeURIComponent(p.issuer)}:${encodeURIComponent(`${p.user}@${p.host}`)}`
  let query = `secret=${p.secret}&issuer=${encodeURIComponent(p.issuer)}`
  if (p.algorithm !== 'SHA1') query += `&algorithm=${p.algorithm}`
  if (p.digits !== 6) query += `&digits=${p.digits}`
  if (p.interval !== 30) query += `&period=${p.interval}`
  return `otpauth://totp/${label}?${query}`
}

/** The key as people type it into an app: groups of four. */
export const groupKey = (secret: string): string => secret.match(/.{1,4}/g)?.join(' ') ?? ''
