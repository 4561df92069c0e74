import {describe, expect, it} from 'vitest'
import {EXIT} from '../../src/core/errors.js'
import {parseUserList, unique} from '../../src/core/userlist.js'
import {thrown} from '../helpers/errors.js'

describe('parseUserList', () => {
  it('reads one name per line', () => {
    expect(parseUserList('alice\nbob\ncarol', 'users.txt')).toEqual(['alice', 'bob', 'carol'])
  })

  it('trims surrounding whitespace, including CRLF line ends', () => {
    expect(parseUserList('  alice  \n\tbob\r\ncarol\r\n', 'users.txt')).toEqual(['alice', 'bob', 'carol'])
  })

  it('skips blank lines and # comments', () => {
    const text = '# staff\n\nalice\n   \n  # indented comment\nbob\n#carol\n'
    expect(parseUserList(text, 'users.txt')).toEqual(['alice', 'bob'])
  })

  it('gives an empty list for an empty file or one with only comments', () => {
    expect(parseUserList('', 'users.txt')).toEqual([])
    expect(parseUserList('# nobody yet\n\n', 'users.txt')).toEqual([])
  })

  it('keeps duplicates for unique() to drop', () => {
    expect(parseUserList('alice\nbob\nalice', 'users.txt')).toEqual(['alice', 'bob', 'alice'])
  })

  it.each([
    ['a space', 'alice bob'],
    ['a tab', 'alice\tbob'],
    ['a trailing comment', 'alice # admin'],
  ])('refuses whitespace inside a line (%s) with FILE:LINE and exit 2', (_, line) => {
    const error = thrown(() => parseUserList(`ok\n# c\n${line}\n`, 'list.txt'))
    expect(error.exit).toBe(EXIT.usage)
    expect(error.message.startsWith('list.txt:3: ')).toBe(true)
  })

  it.each(['-x', '../x', 'a/b', 'é', 'a'.repeat(33)])('refuses the bad name %j with FILE:LINE and exit 2', (name) => {
    const error = thrown(() => parseUserList(`alice\n\n${name}`, '/tmp/users.txt'))
    expect(error.exit).toBe(2)
    expect(error.message.startsWith('/tmp/users.txt:3: ')).toBe(true)
  })

  it('reports the first problem in the file', () => {
    const error = thrown(() => parseUserList('alice\n-bad\nbob\nalso bad', 'f'))
    expect(error.message.startsWith('f:2: ')).toBe(true)
  })
})

describe('unique', () => {
  it('keeps each name once, in first-seen order', () => {
    expect(unique(['bob', 'alice', 'bob', 'carol', 'alice'])).toEqual(['bob', 'alice', 'carol'])
  })

  it('treats names case-sensitively', () => {
    expect(unique(['alice', 'Alice'])).toEqual(['alice', 'Alice'])
  })

  it('deduplicates a parsed list', () => {
    expect(unique(parseUserList('alice\nbob\n  alice  \n', 'users.txt'))).toEqual(['alice', 'bob'])
  })
})
