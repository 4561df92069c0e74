import {describe, expect, it} from 'vitest'
import {EXIT} from '../../src/core/errors.js'
import {checkIssuer, checkUsername, normalizeCode} from '../../src/core/validate.js'
import {thrown} from '../helpers/errors.js'

/** Runs `fn` and returns what it threw. */
describe('checkUsername', () => {
  it.each([
    ['a single character', 'a'],
    ['letters, digits, dot, underscore and dash', 'a.b_c-d'],
    ['a name starting with a digit', '0day'],
    ['a name starting with a dot', '.hidden'],
    ['a name starting with an underscore', '_svc'],
    ['32 characters', 'a'.repeat(32)],
    ['__proto__', '__proto__'],
    ['constructor', 'constructor'],
    ['toString', 'toString'],
  ])('accepts %s', (_, name) => {
    expect(checkUsername(name)).toBe(name)
  })

  it.each([
    ['the empty name', ''],
    ['a name starting with a dash', '-x'],
    ['33 characters', 'a'.repeat(33)],
    ['a tab', 'a\tb'],
    ['a space', 'a b'],
    ['a trailing newline', 'alice\n'],
    ['a newline inside', 'al\nice'],
    ['a path with ..', '../x'],
    ['a slash', 'a/b'],
    ['a backslash', 'a\\b'],
    ['a non-ASCII letter', 'é'],
    ['a colon', 'a:b'],
    ['an at sign', 'a@b'],
    ['a NUL', 'a\u0000'],
    ['the current directory', '.'],
    ['the parent directory', '..'],
  ])('refuses %s with a usage error', (_, name) => {
    const error = thrown(() => checkUsername(name))
    expect(error.exit).toBe(EXIT.usage)
    expect(error.exit).toBe(2)
  })

  it('quotes the name in the message so control characters do not reach the terminal', () => {
    const error = thrown(() => checkUsername('a\u001b[31mb'))
    expect(error.message).not.toContain('\u001b')
    expect(error.message).toContain(JSON.stringify('a\u001b[31mb'))
  })

  it('starts the message with the given location', () => {
    expect(thrown(() => checkUsername('-x', 'users.txt:3: ')).message.startsWith('users.txt:3: ')).toBe(true)
  })
})

describe('checkIssuer', () => {
  it.each([
    ['a single character', 'x'],
    ['spaces', 'ACME NAS'],
    ['unicode letters', 'Société Générale'],
    ['64 ASCII characters', 'i'.repeat(64)],
    ['64 astral characters (counted as characters, not UTF-16 units)', '🔐'.repeat(64)],
  ])('accepts %s', (_, issuer) => {
    expect(checkIssuer(issuer)).toBe(issuer)
  })

  it.each([
    ['the empty issuer', ''],
    ['65 characters', 'i'.repeat(65)],
    ['65 astral characters', '🔐'.repeat(65)],
    ['a colon', 'ACME:NAS'],
    ['only a colon', ':'],
    ['a tab', 'a\tb'],
    ['a newline', 'a\nb'],
    ['a carriage return', 'a\rb'],
    ['a NUL', 'a\u0000b'],
    ['an escape', 'a\u001bb'],
    ['DEL', 'a\u007fb'],
    ['a C1 control', 'a\u0085b'],
    ['a zero-width format character', 'a\u200bb'],
    ['a bidi override', 'a\u202eb'],
    ['a line separator', 'a\u2028b'],
    ['a paragraph separator', 'a\u2029b'],
  ])('refuses %s with a usage error', (_, issuer) => {
    expect(thrown(() => checkIssuer(issuer)).exit).toBe(EXIT.usage)
  })
})

describe('normalizeCode', () => {
  it('strips spaces typed inside a code', () => {
    expect(normalizeCode('123 456')).toBe('123456')
    expect(normalizeCode(' 12 34 56 ')).toBe('123456')
  })

  it('strips other whitespace too', () => {
    expect(normalizeCode('123\t456\n')).toBe('123456')
  })

  it('keeps everything else as given', () => {
    expect(normalizeCode('12a-456')).toBe('12a-456')
    expect(normalizeCode('ABCDE-FGHIJ')).toBe('ABCDE-FGHIJ')
  })
})
