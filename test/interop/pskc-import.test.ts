// Hardware tokens' seed files (PSKC, RFC 6030) written by another implementation, Debian's
// python3-pskc: plain, encrypted with a pre-shared key, and with a password (PBKDF2). The seeds
// imported must give the codes oathtool computes from them; a wrong key imports nothing.
import {spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {base32Encode} from '../../src/core/base32.js'
import {tempStore} from '../helpers/cli.js'
import {check, enable, expectDecision, expectJsonError, type TempStore, withinOneStep} from '../cli/support.js'

const PYTHON = '/usr/bin/python3'
const hasPythonPskc = spawnSync(PYTHON, ['-c', 'import pskc'], {stdio: 'ignore'}).status === 0

interface TokenSpec {
  serial: string
  seed: Buffer
  algorithm?: 'totp' | 'hotp'
  digits?: number
  interval?: number
  suite?: string
}

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

/** Writes a PSKC file with python3-pskc; `encrypt`: a pre-shared key (hex) or a password. */
function writePskc(name: string, tokens: TokenSpec[], encrypt?: {key: string} | {password: string}): string {
  const path = join(store.dir, name)
  const script = `
import json, sys, pskc
spec = json.load(sys.stdin)
p = pskc.PSKC()
for t in spec['tokens']:
    kw = dict(serial=t['serial'], secret=bytes.fromhex(t['seed']), algorithm='urn:ietf:params:xml:ns:keyprov:pskc:' + t['algorithm'], response_length=t['digits'])
    if t['algorithm'] == 'totp': kw['time_interval'] = t['interval']
    else: kw['counter'] = 0
    if t.get('suite'): kw['algorithm_suite'] = t['suite']
    p.add_key(**kw)
enc = spec.get('encrypt')
if enc and 'key' in enc: p.encryption.setup_preshared_key(key=bytes.fromhex(enc['key']))
if enc and 'password' in enc: p.encryption.setup_pbkdf2(enc['password'])
p.write(spec['path'])
`
  const spec = {
    path,
    encrypt,
    tokens: tokens.map((t) => ({
      serial: t.serial,
      seed: t.seed.toString('hex'),
      algorithm: t.algorithm ?? 'totp',
      digits: t.digits ?? 6,
      interval: t.interval ?? 30,
      suite: t.suite,
    })),
  }
  const r = spawnSync(PYTHON, ['-c', script], {input: JSON.stringify(spec), encoding: 'utf8'})
  expect(r.status, r.stderr).toBe(0)
  return path
}

const file = (name: string, text: string) => {
  const path = join(store.dir, name)
  writeFileSync(path, text)
  return path
}
const seed = () => randomBytes(20)
const importPskc = (pskc: string, assign: string, extra: string[] = [], input?: string) =>
  store.run(['user:secret:import', '--from', 'pskc', pskc, '--assign', assign, ...extra, '--json'], {input})

/** Asserts `user`'s stored secret gives oathtool's current code (the import kept seed, digits, step and hash). */
async function codesWork(user: string, t: TokenSpec): Promise<void> {
  const secret = base32Encode(t.seed)
  await withinOneStep(t.interval ?? 30, async () => {
    const args = [
      '--totp' + (t.suite ? `=${t.suite.replace('HMAC-', '').toLowerCase()}` : ''),
      '-b',
      secret,
      '-d',
      String(t.digits ?? 6),
      '-s',
      `${t.interval ?? 30}s`,
    ]
    const code = spawnSync('oathtool', args, {encoding: 'utf8'}).stdout.trim()
    expectDecision(await check(store, user, {code}), true, 'code_accepted')
  })
}

describe.skipIf(!hasPythonPskc)('importing hardware tokens from PSKC files written by python3-pskc', () => {
  it('imports a plain file: the assigned tokens only, with their digits, time step and hash', async () => {
    await enable(store)
    const a: TokenSpec = {serial: 'FOB-0001', seed: seed(), suite: 'HMAC-SHA256'}
    const b: TokenSpec = {serial: 'FOB-0002', seed: seed(), digits: 8, interval: 60}
    const c: TokenSpec = {serial: 'FOB-0003', seed: seed()}
    const pskc = writePskc('plain.pskcxml', [a, b, c])
    const r = await importPskc(pskc, file('assign.csv', '# serial,user\nFOB-0001,alice\nFOB-0002,bob\n'))
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users).toEqual([
      {user: 'alice', serial: 'FOB-0001', interval: 30, digits: 6, algorithm: 'SHA256', recoveryCodes: 0, changed: true},
      {user: 'bob', serial: 'FOB-0002', interval: 60, digits: 8, algorithm: 'SHA1', recoveryCodes: 0, changed: true},
    ])
    await codesWork('alice', a)
    await codesWork('bob', b)
    const again = await importPskc(pskc, file('assign.csv', 'FOB-0001,alice\n'))
    expect(again.json.users[0]).toMatchObject({user: 'alice', changed: false})
  })

  it('imports a file encrypted with a pre-shared key (hex or raw key file); the wrong key imports nothing', async () => {
    await enable(store)
    const key = randomBytes(16)
    const t: TokenSpec = {serial: 'CARD-7', seed: seed()}
    const pskc = writePskc('psk.pskcxml', [t], {key: key.toString('hex')})
    const assign = file('assign.csv', 'CARD-7,carol\n')
    const wrong = Buffer.from(key)
    wrong[0] ^= 0x80
    const before = store.bytes()
    const refused = await importPskc(pskc, assign, ['--pskc-key-file', file('wrong.key', wrong.toString('hex'))])
    const message = expectJsonError(refused, 2)
    expect(message).toMatch(/wrong key or password|MAC does not match/)
    for (const form of [t.seed.toString('hex'), t.seed.toString('base64'), base32Encode(t.seed)]) expect(refused.stdout + refused.stderr).not.toContain(form)
    expect(store.bytes()).toEqual(before)
    expectJsonError(await importPskc(pskc, assign), 2) // no key at all
    const hex = await importPskc(pskc, assign, ['--pskc-key-file', file('hex.key', `${key.toString('hex')}\n`)])
    expect(hex.code, hex.stderr).toBe(0)
    writeFileSync(join(store.dir, 'raw.key'), key)
    expect((await importPskc(pskc, assign, ['--pskc-key-file', join(store.dir, 'raw.key')])).json.users[0]).toMatchObject({changed: false})
    await codesWork('carol', t)
  })

  it('imports a file encrypted with a password read from stdin; a wrong password imports nothing', async () => {
    await enable(store)
    const t: TokenSpec = {serial: 'T-42', seed: seed(), digits: 7}
    const pskc = writePskc('pw.pskcxml', [t], {password: 'correct horse'})
    const assign = file('assign.csv', 'T-42,dave\n')
    const before = store.bytes()
    expect(expectJsonError(await importPskc(pskc, assign, ['--pskc-password', '-'], 'battery staple\n'), 2)).toMatch(/wrong key or password|MAC/)
    expect(store.bytes()).toEqual(before)
    expect(expectJsonError(await importPskc(pskc, assign, ['--pskc-password', 'correct horse']), 2)).toMatch(/takes -/)
    const r = await importPskc(pskc, assign, ['--pskc-password', '-'], 'correct horse\n')
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users[0]).toMatchObject({user: 'dave', digits: 7, changed: true})
    await codesWork('dave', t)
  })

  it('validates the whole file and every assignment first: one refused token (HOTP) imports nobody', async () => {
    await enable(store)
    const pskc = writePskc('mixed.pskcxml', [
      {serial: 'OK-1', seed: seed()},
      {serial: 'HOTP-1', seed: seed(), algorithm: 'hotp'},
    ])
    const before = store.bytes()
    const message = expectJsonError(await importPskc(pskc, file('assign.csv', 'OK-1,erin\nHOTP-1,frank\n')), 2)
    expect(message).toMatch(/assign\.csv:2: token "HOTP-1": counter-based \(HOTP\)/)
    expect(expectJsonError(await importPskc(pskc, file('assign.csv', 'OK-1,erin\nNOPE,frank\n')), 2)).toMatch(/assign\.csv:2: no token with serial "NOPE"/)
    expect(store.bytes()).toEqual(before)
    // an unassigned HOTP token in the file is left alone
    expect((await importPskc(pskc, file('assign.csv', 'OK-1,erin\n'))).code).toBe(0)
  })

  it('reads the assignments from stdin with --assign -', async () => {
    const t: TokenSpec = {serial: 'S-1', seed: seed()}
    const r = await importPskc(writePskc('p.pskcxml', [t]), '-', [], 'S-1,gina\n')
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users.map((u: any) => u.user)).toEqual(['gina'])
  })
})

describe("RFC 6030's own examples through the CLI", () => {
  const figure = (n: number) => join(import.meta.dirname, '..', 'fixtures', 'rfc6030', `figure${n}.pskcxml`)

  it('decrypts figure 6 with its pre-shared key and refuses its HOTP key (exit 2), importing nothing; a wrong key is refused as such', async () => {
    const assign = file('assign.csv', '987654321,alice\n')
    const key = file('psk.key', '12345678901234567890123456789012\n')
    const hotp = await importPskc(figure(6), assign, ['--pskc-key-file', key])
    expect(expectJsonError(hotp, 2)).toMatch(/assign\.csv:1: token "987654321": counter-based \(HOTP\)/)
    expect(store.bytes()).toBeUndefined()
    const wrong = await importPskc(figure(6), assign, ['--pskc-key-file', file('wrong.key', '12345678901234567890123456789013')])
    expect(expectJsonError(wrong, 2)).toMatch(/wrong key or password|MAC/)
  })

  it("derives figure 7's key from its password (on stdin) before refusing its HOTP key", async () => {
    const assign = file('assign.csv', '987654321,alice\n')
    expect(expectJsonError(await importPskc(figure(7), assign, ['--pskc-password', '-'], 'qwerty\n'), 2)).toMatch(/counter-based/)
    expect(expectJsonError(await importPskc(figure(7), assign, ['--pskc-password', '-'], 'qwertz\n'), 2)).toMatch(/wrong key or password|MAC/)
  })
})
