import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {TfaError} from '../../src/core/errors.js'
import {assignTokens, parseAssignments, pskcKey, readPskc} from '../../src/core/pskc.js'
import {parseXml} from '../../src/core/xml.js'

// RFC 6030's own examples (figures 2, 6 and 7): HOTP keys whose secret is "12345678901234567890".
const figure = (n: number) => readFileSync(join(import.meta.dirname, '..', 'fixtures', 'rfc6030', `figure${n}.pskcxml`), 'utf8')
const SEED = Buffer.from('12345678901234567890')
const PRE_SHARED = Buffer.from('12345678901234567890123456789012', 'hex')

/** The one-line usage error (exit 2) `fn` throws. */
function usage(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(TfaError)
    expect((error as TfaError).exit).toBe(2)
    return (error as TfaError).message
  }
  throw new Error('expected a usage error')
}

describe("RFC 6030's examples", () => {
  it('reads the plain key of figure 2 (serial: the Key Id when there is no SerialNo) and marks it HOTP', () => {
    const [token, ...rest] = readPskc(figure(2), 'f2', {})
    expect(rest).toEqual([])
    expect(token.serial).toBe('12345678')
    expect(token.secret.equals(SEED)).toBe(true)
    expect(token.problem).toMatch(/counter-based \(HOTP\)/)
  })

  it('checks the MAC and decrypts figure 6 with the pre-shared key', () => {
    const [token] = readPskc(figure(6), 'f6', {key: PRE_SHARED})
    expect(token.serial).toBe('987654321')
    expect(token.secret.equals(SEED)).toBe(true)
    expect(token.digits).toBe(8)
    expect(token.problem).toMatch(/HOTP/)
  })

  it('derives the key of figure 7 from its password with PBKDF2', () => {
    const [token] = readPskc(figure(7), 'f7', {password: 'qwerty'})
    expect(token.secret.equals(SEED)).toBe(true)
  })

  it('refuses a wrong pre-shared key or password without a seed in the message', () => {
    const wrong = Buffer.from(PRE_SHARED)
    wrong[15] ^= 1
    for (const message of [usage(() => readPskc(figure(6), 'f6', {key: wrong})), usage(() => readPskc(figure(7), 'f7', {password: 'qwertz'}))]) {
      expect(message).toMatch(/wrong key or password/)
      for (const form of [SEED.toString(), SEED.toString('hex'), SEED.toString('base64'), 'GEZDGNBVGY3TQOJQ']) expect(message).not.toContain(form)
    }
  })

  it('refuses a value whose MAC does not match (an altered file)', () => {
    const altered = figure(6).replace('Su+NvtQfmvfJzF6bmQiJqoLRExc=', 'Tu+NvtQfmvfJzF6bmQiJqoLRExc=')
    expect(usage(() => readPskc(altered, 'f6', {key: PRE_SHARED}))).toMatch(/MAC does not match/)
  })

  it('refuses an encrypted file when no key or password is given, saying which one', () => {
    expect(usage(() => readPskc(figure(6), 'f6', {}))).toMatch(/--pskc-key-file/)
    expect(usage(() => readPskc(figure(7), 'f7', {}))).toMatch(/--pskc-password -/)
  })

  it('refuses an assigned HOTP token', () => {
    const tokens = readPskc(figure(6), 'f6', {key: PRE_SHARED})
    expect(usage(() => assignTokens(tokens, parseAssignments('987654321,alice\n', 'a'), 'a', 'f6'))).toMatch(/^a:1: token "987654321": counter-based/)
  })
})

describe('the XML reader', () => {
  it('resolves namespaces and decodes entities', () => {
    const root = parseXml('<?xml version="1.0"?><!-- c --><p:a xmlns:p="urn:x" b="1 &amp; 2"><![CDATA[<t>]]>&#65;<c/></p:a>')
    expect(root).toMatchObject({name: 'a', ns: 'urn:x', attrs: {b: '1 & 2'}, text: '<t>A'})
    expect(root.children.map((c) => c.name)).toEqual(['c'])
  })

  it.each([
    ['a DOCTYPE (no entity expansion)', '<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'],
    ['an unknown entity', '<a>&x;</a>'],
    ['a mismatched end tag', '<a><b></a></b>'],
    ['an undeclared prefix', '<p:a/>'],
    ['content after the root', '<a/><b/>'],
    ['an unclosed element', '<a><b/>'],
    ['a duplicate attribute', '<a x="1" x="2"/>'],
  ])('refuses %s', (_, text) => {
    expect(() => parseXml(text)).toThrow(/at line \d+/)
  })

  it('refuses a document that is not PSKC', () => {
    expect(usage(() => readPskc('<KeyContainer Version="1.0"/>', 'x', {}))).toMatch(/not a PSKC file/)
  })
})

describe('assignments and key files', () => {
  it('reads serial,user lines with comments, and refuses duplicates and bad names as FILE:LINE', () => {
    expect(parseAssignments('# tokens\nSN1, alice\n\nSN2,bob\n', 'f')).toEqual([
      {serial: 'SN1', user: 'alice', line: 2},
      {serial: 'SN2', user: 'bob', line: 4},
    ])
    expect(usage(() => parseAssignments('SN1,alice\nSN1,bob\n', 'f'))).toMatch(/^f:2: serial "SN1" is assigned twice/)
    expect(usage(() => parseAssignments('SN1,alice\nSN2,alice\n', 'f'))).toMatch(/^f:2: alice is given two tokens/)
    expect(usage(() => parseAssignments('SN1,-x\n', 'f'))).toMatch(/^f:1: invalid username/)
    expect(usage(() => parseAssignments('SN1\n', 'f'))).toMatch(/^f:1: expected serial,user/)
    expect(usage(() => parseAssignments('# nothing\n', 'f'))).toMatch(/no assignments/)
  })

  it('refuses an assignment naming a serial the file does not hold', () => {
    const tokens = readPskc(figure(6), 'f6', {key: PRE_SHARED})
    expect(usage(() => assignTokens(tokens, parseAssignments('42,alice\n', 'a'), 'a', 'f6'))).toMatch(/^a:1: no token with serial "42" in f6/)
  })

  it('takes a key file as 16 raw bytes or 32 hex digits, and nothing else', () => {
    expect(pskcKey(PRE_SHARED, 'k').equals(PRE_SHARED)).toBe(true)
    expect(pskcKey(Buffer.from('12345678901234567890123456789012\n'), 'k').equals(PRE_SHARED)).toBe(true)
    expect(usage(() => pskcKey(Buffer.from('1234'), 'k'))).toMatch(/16 raw bytes or 32 hex digits/)
  })
})

describe('a key Policy (RFC 6030 §5: what is not understood is not permitted)', () => {
  const withPolicy = (policy: string) =>
    `<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"><KeyPackage><DeviceInfo><SerialNo>P1</SerialNo></DeviceInfo>
     <Key Id="k" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp"><Data><Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue></Secret></Data>
     <Policy>${policy}</Policy></Key></KeyPackage></KeyContainer>`
  const problem = (policy: string) => readPskc(withPolicy(policy), 'p', {})[0].problem

  it.each([
    ['OTP use within its dates', '<KeyUsage>OTP</KeyUsage><StartDate>2006-05-01T00:00:00Z</StartDate><ExpiryDate>2999-05-31T00:00:00Z</ExpiryDate>'],
    ['no rule at all', ''],
  ])('accepts %s', (_, policy) => {
    expect(problem(policy)).toBeUndefined()
  })

  it.each([
    ['a PIN policy', '<PINPolicy MinLength="4" PINUsageMode="Local"/>', /PINPolicy, which tfactl cannot enforce/],
    ['a number of transactions', '<NumberOfTransactions>10</NumberOfTransactions>', /NumberOfTransactions/],
    ['a usage other than OTP', '<KeyUsage>Encrypt</KeyUsage>', /does not allow OTP/],
    ['an expired key', '<ExpiryDate>2001-01-01T00:00:00Z</ExpiryDate>', /expired/],
    ['a key not valid yet', '<StartDate>2999-01-01T00:00:00Z</StartDate>', /may not be used before/],
  ])('refuses %s', (_, policy, why) => {
    expect(problem(policy)).toMatch(why)
  })
})

it('reads a file holding a key without a secret, and refuses that key only when it is assigned', () => {
  const text = `<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">
    <KeyPackage><DeviceInfo><SerialNo>EMPTY</SerialNo></DeviceInfo><Key Id="a" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp"/></KeyPackage>
    <KeyPackage><DeviceInfo><SerialNo>FULL</SerialNo></DeviceInfo><Key Id="b" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp">
      <Data><Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue></Secret></Data></Key></KeyPackage></KeyContainer>`
  const tokens = readPskc(text, 'p', {})
  expect(assignTokens(tokens, parseAssignments('FULL,alice\n', 'a'), 'a', 'p')[0].token.secret.equals(SEED)).toBe(true)
  expect(usage(() => assignTokens(tokens, parseAssignments('EMPTY,bob\n', 'a'), 'a', 'p'))).toMatch(/holds no secret/)
})
