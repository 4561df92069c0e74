// Invalid usage or input exits 2, changes nothing (an existing store keeps its bytes, a
// missing one stays missing), and is reported on one line: one JSON document under --json.
import {existsSync} from 'node:fs'
import {dirname} from 'node:path'
import {afterAll, beforeAll, describe, expect, it, type TestContext} from 'vitest'
import {tempStore} from '../helpers/cli.js'
import {copyStore, enable, errorLines, expectJsonError, hasStack, renew, type TempStore} from './support.js'

const BAD_USERNAMES: Record<string, string> = {
  'an empty username': '',
  'a leading dash': '-x',
  'a space': 'a b',
  'a tab': 'a\tb',
  '33 characters': 'a'.repeat(33),
  'a non-ASCII letter': 'é',
}

const CASES: Array<[string, string[]]> = [
  ...Object.entries(BAD_USERNAMES).flatMap(
    ([label, name]): Array<[string, string[]]> => [
      [`renew with ${label}`, ['user:secret:renew', name, '--qr', 'none']],
      [`login:check with ${label}`, ['login:check', name, '--code', '123456']],
    ],
  ),
  ['show with a bad username', ['user:secret:show', 'a b']],
  ['unset with an empty username', ['user:secret:unset', '', '--yes']],
  ['confirm with a bad username', ['user:secret:confirm', 'é', '--code', '123456']],
  ['renew with one bad username among good ones', ['user:secret:renew', 'bob', 'a b', '--qr', 'none']],
  ['renew --interval 45', ['user:secret:renew', 'bob', '--interval', '45']],
  ['renew --digits 5', ['user:secret:renew', 'bob', '--digits', '5']],
  ['renew --digits 9', ['user:secret:renew', 'bob', '--digits', '9']],
  ['renew --qr big', ['user:secret:renew', 'bob', '--qr', 'big']],
  ['enable --window 11', ['twofactor:enable', '--window', '11']],
  ['enable --window -1', ['twofactor:enable', '--window=-1']],
  ['enable --window abc', ['twofactor:enable', '--window', 'abc']],
  ['enable --issuer with a colon', ['twofactor:enable', '--issuer', 'NAS:office']],
  ['enable --issuer of 65 characters', ['twofactor:enable', '--issuer', 'x'.repeat(65)]],
  ['enable --issuer empty', ['twofactor:enable', '--issuer', '']],
  ['enable --issuer with a newline', ['twofactor:enable', '--issuer', 'NAS\noffice']],
  ['enable with an unknown flag', ['twofactor:enable', '--bogus']],
  ['disable with an unknown flag', ['twofactor:disable', '--bogus']],
  ['status with an unknown flag', ['twofactor:status', '--verbose']],
  ['status with an unexpected argument', ['twofactor:status', 'extra']],
  ['user:list with an unknown flag', ['user:list', '--all']],
  ['login:check with an unknown flag', ['login:check', 'alice', '--otp', '123456']],
  ['login:check without a username', ['login:check', '--code', '123456']],
  ['login:check --method key --service ui', ['login:check', 'alice', '--method', 'key', '--service', 'ui']],
  ['login:check --service web', ['login:check', 'alice', '--service', 'web']],
  ['login:check --method otp', ['login:check', 'alice', '--service', 'ssh', '--method', 'otp']],
  ['unset without --yes and no terminal', ['user:secret:unset', 'alice']],
  ['confirm without --code', ['user:secret:confirm', 'alice']],
]

/** A store with 2FA on and alice enrolled; each test works on its own copy. */
let template: TempStore
beforeAll(async () => {
  template = tempStore()
  await enable(template, '--ssh')
  await renew(template, 'alice')
})
afterAll(() => {
  template.cleanup()
})

// vitest runs the CLI with NODE_ENV=test, which the helper passes on; oclif then adds
// development-only warnings to stderr. Human-output checks run the CLI as installed.
const INSTALLED = {env: {NODE_ENV: 'production'}}

/** A fresh private store for one (possibly concurrent) test, removed when the test ends. */
function ownStore(ctx: TestContext, populated: boolean): TempStore {
  const store = tempStore()
  ctx.onTestFinished(() => store.cleanup())
  if (populated) copyStore(template, store)
  return store
}

describe.concurrent('invalid usage exits 2 and changes nothing', () => {
  it('starts from a working copy of the populated store', async (ctx) => {
    const {expect} = ctx
    const store = ownStore(ctx, true)
    const r = await store.run(['twofactor:status', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({enabled: true, ssh: true, users: {configured: 1}})
  })

  for (const [label, args] of CASES) {
    it(label, async (ctx) => {
      const {expect} = ctx
      // With --json, on an existing store: one JSON error document, store bytes unchanged.
      const store = ownStore(ctx, true)
      const before = store.bytes()
      const json = await store.run([...args, '--json'])
      const message = expectJsonError(json, 2)
      expect(message).not.toContain('\n')
      expect(hasStack(json.stderr)).toBe(false)
      expect(store.bytes()).toEqual(before)

      // Without --json, with no store: one line on stderr, and still no store.
      const missing = ownStore(ctx, false)
      const plain = await missing.run(args, INSTALLED)
      expect(plain.code, plain.stderr).toBe(2)
      expect(hasStack(plain.stderr)).toBe(false)
      expect(errorLines(plain.stderr), plain.stderr).toHaveLength(1)
      expect(existsSync(missing.path)).toBe(false)
      expect(existsSync(dirname(missing.path))).toBe(false)
    })
  }
})

describe('--json errors', () => {
  it('are an object whose error member holds the message, and nothing else is on stdout', async (ctx) => {
    const store = ownStore(ctx, false)
    const r = await store.run(['user:secret:renew', 'bob', '--interval', '45', '--json'])
    expectJsonError(r, 2)
    expect(JSON.parse(r.stdout)).toEqual(r.json)
    expect(r.stdout.trim().startsWith('{')).toBe(true)
  })

  it('name --yes when a confirmation is needed and there is no terminal', async (ctx) => {
    const store = ownStore(ctx, true)
    expect(expectJsonError(await store.run(['user:secret:unset', 'alice', '--json']), 2)).toContain('--yes')
    const plain = await store.run(['user:secret:unset', 'alice'], INSTALLED)
    expect(plain.code).toBe(2)
    expect(plain.stderr).toContain('--yes')
  })
})
