import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {newUserRecord, emptyDoc, type Doc} from '../../src/core/model.js'
import {bufferSource, decodeOneUser, encodeStore, joinStore, splitStore} from '../../src/store/file/codec.js'
import {decodeStore} from '../../src/store/sealed.js'
import {keyId, type KeyRing} from '../../src/store/keys.js'
import {newSecret} from '../../src/core/codes.js'

const key = randomBytes(32)
const keys: KeyRing = {byId: (id) => (id === keyId(key) ? key : undefined), current: () => ({id: keyId(key), key})}

function docWith(names: string[]): Doc {
  const doc = emptyDoc()
  for (const name of names) doc.users.set(name, {...newUserRecord(), secret: newSecret(), createdAt: new Date(0).toISOString()})
  return doc
}

const names = ['zed', 'alice', '__proto__', 'bob.smith', 'Carol', 'dave-2', '_x', '0day', 'constructor', 'mallory', 'a', 'aa', 'ab']

describe('one-user reads of the line-per-user store', () => {
  const doc = docWith(names)
  const {text} = encodeStore(doc, keys, 'epoch1')
  const src = bufferSource(Buffer.from(text))

  it.each(names)('finds %s with its own secret, and only that user', (name) => {
    const one = decodeOneUser(src, name, 'store.json', keys)!
    expect([...one.doc.users.keys()]).toEqual([name])
    expect(one.doc.users.get(name)!.secret).toBe(doc.users.get(name)!.secret)
    expect(one.epoch).toBe('epoch1')
  })

  it('answers "no record" for a user the store does not hold', () => {
    for (const name of ['nobody', 'b', 'zzz', 'A']) expect(decodeOneUser(src, name, 'store.json', keys)!.doc.users.size).toBe(0)
  })

  it('still finds every user when the lines were reordered by hand (a miss is confirmed by a full scan)', () => {
    const [head, ...rest] = text.split('\n')
    const lines = rest
      .slice(0, -2)
      .map((l) => l.replace(/,$/, ''))
      .reverse()
    const shuffled = Buffer.from(`${head}\n${lines.join(',\n')}\n}}\n`)
    expect(decodeStore(shuffled.toString(), 'store.json', keys).doc.users.size).toBe(names.length)
    for (const name of names) expect(decodeOneUser(bufferSource(shuffled), name, 'store.json', keys)!.doc.users.has(name)).toBe(true)
  })

  it('declines a file cut short, so the caller decodes (and refuses) the whole document', () => {
    expect(decodeOneUser(bufferSource(Buffer.from(text.slice(0, text.length - 3))), 'alice', 'store.json', keys)).toBeUndefined()
  })

  it('reads a store with no users', () => {
    const empty = encodeStore(emptyDoc(), keys, 'e').text
    expect(decodeOneUser(bufferSource(Buffer.from(empty)), 'alice', 'store.json', keys)!.doc.users.size).toBe(0)
  })

  it('finds a present user by binary search: only a small part of a large store is read', () => {
    const many = Array.from({length: 3000}, (_, i) => `u${String(i).padStart(4, '0')}`)
    const buf = Buffer.from(encodeStore(docWith(many), keys, 'e').text)
    for (const name of ['u0000', 'u1499', 'u2999', 'u0777', 'u2048']) {
      let bytes = 0
      const counting = {
        size: buf.length,
        read: (p: number, n: number) => {
          bytes += n
          return buf.subarray(p, p + n)
        },
      }
      expect(decodeOneUser(counting, name, 'store.json', keys)!.doc.users.has(name)).toBe(true)
      // A search that misses falls back to reading the whole body: this would catch it.
      expect(bytes, `${name}: read ${bytes} of ${buf.length} bytes`).toBeLessThan(buf.length / 3)
    }
  })

  it('finds users in a large store', () => {
    const many = Array.from({length: 3000}, (_, i) => `u${i}`)
    const big = bufferSource(Buffer.from(encodeStore(docWith(many), keys, 'e').text))
    for (const name of ['u0', 'u1499', 'u2999', 'u777']) expect(decodeOneUser(big, name, 'store.json', keys)!.doc.users.has(name)).toBe(true)
  })
})

describe("a token's drift in the record", () => {
  it('round-trips, is left out of the record when there is none, and is bounded to a day', () => {
    const doc = docWith(['alice', 'bob'])
    doc.users.get('alice')!.driftSteps = -240
    const {text} = encodeStore(doc, keys, 'e')
    expect(text).toContain('"driftSteps":-240')
    expect(text.match(/driftSteps/g)).toHaveLength(1)
    const back = decodeStore(text, 'store.json', keys).doc
    expect(back.users.get('alice')!.driftSteps).toBe(-240)
    expect(back.users.get('bob')!.driftSteps).toBeUndefined()
    expect(() => decodeStore(text.replace('"driftSteps":-240', '"driftSteps":2881'), 'store.json', keys)).toThrow(
      /driftSteps: expected a whole number from -2880 to 2880/,
    )
  })
})

describe('the line index of a store (splitStore)', () => {
  const doc = docWith(names)
  const {text} = encodeStore(doc, keys, 'epoch1')
  const lineTexts = text.split('\n').slice(1, -2) // the user lines, each with its comma but the last
  /** A store of these lines, in this order, with a digest that matches them (as tfactl would write it). */
  const storeOf = (lines: string[]) =>
    Buffer.concat(joinStore(keyId(key), 'epoch1', doc.settings, null, [Buffer.from(lines.map((l) => l.replace(/,$/, '')).join(',\n'))]))

  it("names every line, in the file's (byte) order, and finds each record's text after its name", () => {
    const split = splitStore(Buffer.from(text), 'store.json', keys)!
    const listed = Array.from({length: split.lines.count}, (_, i) => split.lines.name(i))
    expect(listed).toEqual([...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
    for (let i = 0; i < split.lines.count; i++) {
      const record = JSON.parse(split.lines.buf.toString('utf8', split.lines.nameEnds[i] + 2, split.lines.ends[i]))
      expect(record.createdAt).toBe(new Date(0).toISOString())
    }
    expect(splitStore(storeOf(lineTexts), 'store.json', keys)!.lines.count).toBe(names.length) // the same lines written again
  })

  it('declines lines out of order, a name twice, or a name with other characters (the caller then decodes everything)', () => {
    const swapped = [...lineTexts]
    ;[swapped[2], swapped[3]] = [swapped[3], swapped[2]]
    expect(splitStore(storeOf(swapped), 'store.json', keys)).toBeUndefined()
    expect(splitStore(storeOf([lineTexts[0], ...lineTexts]), 'store.json', keys)).toBeUndefined()
    expect(splitStore(storeOf([lineTexts[0].replace(/^"[^"]+"/, '"0d ay"'), ...lineTexts.slice(1)]), 'store.json', keys)).toBeUndefined()
  })
})
