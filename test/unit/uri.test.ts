import {describe, expect, it} from 'vitest'
import {groupKey, otpauthUri, type UriParams} from '../../src/core/uri.js'

const SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'
const base: UriParams = {issuer: 'tfactl', user: 'alice', host: 'nas.example.com', secret: SECRET, interval: 30, digits: 6, algorithm: 'SHA1'}

/** Splits an otpauth URI into its parts, decoding them the way an authenticator app does. */
function parse(uri: string) {
  const match = /^otpauth:\/\/totp\/([^?]*)\?(.*)$/.exec(uri)
  if (!match) throw new Error(`not an otpauth totp URI: ${uri}`)
  const [, rawLabel, rawQuery] = match
  const query = rawQuery.split('&').map((kv) => kv.split('=') as [string, string])
  return {
    rawLabel,
    rawQuery,
    label: decodeURIComponent(rawLabel),
    keys: query.map(([k]) => k),
    params: Object.fromEntries(query.map(([k, v]) => [k, decodeURIComponent(v)])),
  }
}

describe('otpauthUri', () => {
  it('builds otpauth://totp/<issuer>:<user>@<host>?secret=…&issuer=… for the defaults', () => {
    const u = parse(otpauthUri(base))
    expect(u.label).toBe('tfactl:alice@nas.example.com')
    expect(u.keys).toEqual(['secret', 'issuer'])
    expect(u.params).toEqual({secret: SECRET, issuer: 'tfactl'})
  })

  it('keeps the label and issuer intact for plain ASCII names', () => {
    const uri = otpauthUri(base)
    expect(uri.startsWith('otpauth://totp/tfactl:alice')).toBe(true)
    expect(uri.endsWith(`?secret=${SECRET}&issuer=tfactl`)).toBe(true)
  })

  it('adds digits only when they are not 6', () => {
    expect(parse(otpauthUri({...base, digits: 8})).params.digits).toBe('8')
    expect(parse(otpauthUri({...base, digits: 7})).params.digits).toBe('7')
    expect(parse(otpauthUri({...base, digits: 6})).keys).not.toContain('digits')
  })

  it('adds period only when it is not 30', () => {
    expect(parse(otpauthUri({...base, interval: 60})).params.period).toBe('60')
    expect(parse(otpauthUri({...base, interval: 30})).keys).not.toContain('period')
  })

  it('adds algorithm only when it is not SHA1', () => {
    expect(parse(otpauthUri({...base, algorithm: 'SHA256'})).params.algorithm).toBe('SHA256')
    expect(parse(otpauthUri({...base, algorithm: 'SHA512'})).params.algorithm).toBe('SHA512')
    expect(parse(otpauthUri(base)).keys).not.toContain('algorithm')
  })

  it('encodes an issuer with spaces in both the label and the issuer parameter', () => {
    const u = parse(otpauthUri({...base, issuer: 'ACME NAS'}))
    expect(u.rawLabel).not.toContain(' ')
    expect(u.rawQuery).not.toContain(' ')
    expect(u.label).toBe('ACME NAS:alice@nas.example.com')
    expect(u.params.issuer).toBe('ACME NAS')
  })

  it('encodes a unicode issuer as UTF-8 percent escapes', () => {
    const issuer = 'Société Générale 🔐'
    const uri = otpauthUri({...base, issuer})
    expect(uri).toMatch(/^[\x21-\x7e]+$/) // a URI is printable ASCII only
    const u = parse(uri)
    expect(u.label).toBe(`${issuer}:alice@nas.example.com`)
    expect(u.params.issuer).toBe(issuer)
  })

  it('encodes URI delimiters in the issuer so they cannot split the URI', () => {
    const issuer = 'a&b=c?d#e/f%g+h'
    const u = parse(otpauthUri({...base, issuer}))
    expect(u.keys).toEqual(['secret', 'issuer'])
    expect(u.params.issuer).toBe(issuer)
    expect(u.label).toBe(`${issuer}:alice@nas.example.com`)
  })

  it('has exactly one unencoded ":" in the label, between issuer and account', () => {
    const u = parse(otpauthUri({...base, user: 'bob.smith', host: 'host-1'}))
    expect(u.rawLabel.split(':')).toHaveLength(2)
    expect(u.label).toBe('tfactl:bob.smith@host-1')
  })
})

describe('groupKey', () => {
  it('splits the key into groups of four separated by spaces', () => {
    expect(groupKey('ABCDEFGHIJKL')).toBe('ABCD EFGH IJKL')
  })

  it('leaves a shorter last group', () => {
    expect(groupKey('ABCDEFGHIJ')).toBe('ABCD EFGH IJ')
    expect(groupKey('ABC')).toBe('ABC')
  })

  it('gives an empty string for an empty key', () => {
    expect(groupKey('')).toBe('')
  })

  it('keeps every character of a 32-character key in order', () => {
    const grouped = groupKey(SECRET)
    expect(grouped.split(' ')).toEqual(['GEZD', 'GNBV', 'GY3T', 'QOJQ', 'GEZD', 'GNBV', 'GY3T', 'QOJQ'])
    expect(grouped.replaceAll(' ', '')).toBe(SECRET)
  })
})
