// A corrupt or foreign store stops every command with exit 3 and is never rewritten.
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {tempStore} from '../helpers/cli.js'
import {errorLines, expectJsonError, hasStack, type TempStore, writeStore} from './support.js'

/** Every command, with arguments it would accept on a healthy store. */
const COMMANDS: string[][] = [
  ['twofactor:enable'],
  ['twofactor:enable', '--window', '2', '--ssh', '--issuer', 'NAS office', '--fail-delay', '0'],
  ['twofactor:enable', '--stig'],
  ['twofactor:disable'],
  ['twofactor:status'],
  ['user:secret:renew', 'alice'],
  ['user:secret:renew', 'alice', '--interval', '60', '--digits', '8', '--qr', 'small'],
  ['user:secret:renew'],
  ['user:secret:unset', 'alice', '--yes'],
  ['user:secret:show', 'alice'],
  ['user:secret:confirm', 'alice', '--code', '123456'],
  ['user:list'],
  ['login:check', 'alice'],
  ['login:check', 'alice', '--code', '123456'],
  ['login:check', 'alice', '--code', '123 456', '--service', 'ssh'],
  ['login:check', 'alice', '--service', 'ssh', '--method', 'key'],
]

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

describe('a store holding {"broken', () => {
  for (const args of COMMANDS) {
    it(`${args.join(' ')} exits 3 and leaves the file byte-identical`, async () => {
      writeStore(store, '{"broken')
      const before = store.bytes()

      const json = await store.run([...args, '--json'])
      expect(expectJsonError(json, 3)).toContain(store.path)

      const plain = await store.run(args)
      expect(plain.code, plain.stderr).toBe(3)
      expect(errorLines(plain.stderr)).toHaveLength(1)
      expect(plain.stderr).toContain(store.path)
      expect(hasStack(plain.stderr + json.stderr)).toBe(false)

      expect(store.bytes()).toEqual(before)
    })
  }

  it('still reports usage errors first (exit 2), before the store is read', async () => {
    writeStore(store, '{"broken')
    const before = store.bytes()
    expectJsonError(await store.run(['user:secret:renew', 'a b', '--json']), 2)
    expectJsonError(await store.run(['twofactor:enable', '--window', '11', '--json']), 2)
    expectJsonError(await store.run(['login:check', 'alice', '--bogus', '--json']), 2)
    expect(store.bytes()).toEqual(before)
  })
})

describe('a store of the wrong shape or version', () => {
  for (const [label, content] of [
    ['users as an array', '{"version":1,"users":[]}'],
    ['version 99', '{"version":99}'],
  ]) {
    for (const args of [['twofactor:status'], ['twofactor:enable'], ['user:secret:renew', 'alice'], ['login:check', 'alice']]) {
      it(`${args[0]} exits 3 naming the path for ${label}`, async () => {
        writeStore(store, content)
        const r = await store.run([...args, '--json'])
        expect(expectJsonError(r, 3)).toContain(store.path)
        expect(store.bytes()?.toString()).toBe(content)
      })
    }
  }
})
