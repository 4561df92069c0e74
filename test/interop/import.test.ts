// Interop: enrolments made by other tools (the real google-authenticator CLI, a pam_oath users
// file, a bare base32 secret) come over with user:secret:import; codes that worked before work
// after (checked with oathtool on the original secret), and a bad input writes nothing.
import {execFileSync, spawn} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {userInfo} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {BIN, oathtool, tempStore} from '../helpers/cli.js'
import {check, enable, expectDecision, expectJsonError, renew, type TempStore} from '../cli/support.js'

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

/** A ~/.google_authenticator written by the real CLI, non-interactively. */
function googleAuthenticator(name: string, flags: string[]): string {
  const path = join(store.dir, name)
  execFileSync('google-authenticator', ['-f', '-r', '3', '-R', '30', '-w', '3', '-q', ...flags, '-s', path], {
    env: {...process.env, HOME: store.dir},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  return path
}

/** oathtool's code for a hex secret, as pam_oath's users file holds it. */
const oathtoolHex = (hex: string, interval: number, digits: number): string =>
  execFileSync('oathtool', ['--totp', '-s', `${interval}s`, '-d', String(digits), hex], {encoding: 'utf8'}).trim()

const hexOf = (bytes: number, seed: number): string => Buffer.from(Array.from({length: bytes}, (_, i) => (i * 37 + seed) & 0xff)).toString('hex')

function writeFile(name: string, text: string): string {
  const path = join(store.dir, name)
  writeFileSync(path, text)
  return path
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
/** The 1-based number of the first line of `path` that matches `pattern`. */
const lineOf = (path: string, pattern: RegExp): number =>
  readFileSync(path, 'utf8')
    .split('\n')
    .findIndex((l) => pattern.test(l)) + 1

const importJson = (args: string[], input?: string) => store.run(['user:secret:import', ...args, '--json'], {input})

describe('google-authenticator files', () => {
  it('imports a TOTP file: its codes verify, scratch codes work once as recovery codes, a re-import changes nothing', async () => {
    await enable(store)
    const file = googleAuthenticator('ga-alice', ['-t', '-d', '-e', '3'])
    const lines = readFileSync(file, 'utf8').split('\n')
    const secret = lines[0]
    const scratch = lines.filter((l) => /^\d{8}$/.test(l))
    expect(scratch).toHaveLength(3)

    const r = await importJson(['--from', 'google-authenticator', file, '--user', 'alice'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.json.users).toEqual([{user: 'alice', interval: 30, digits: 6, algorithm: 'SHA1', recoveryCodes: 3, changed: true}])

    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
    expectDecision(await check(store, 'alice', {code: scratch[0]}), true, 'recovery_code_accepted')
    expectDecision(await check(store, 'alice', {code: scratch[0]}), false, 'code_invalid')
    expectDecision(await check(store, 'alice', {code: scratch[2]}), true, 'recovery_code_accepted')

    const before = store.bytes()!
    const again = await importJson(['--from', 'google-authenticator', file, '--user', 'alice'])
    expect(again.code, again.stdout + again.stderr).toBe(0)
    expect(again.json.users).toMatchObject([{user: 'alice', changed: false}])
    expect(store.bytes()!.equals(before)).toBe(true)
  })

  it('keeps the 60 s step size of a file made with -S 60', async () => {
    await enable(store)
    const file = googleAuthenticator('ga-bob', ['-t', '-D', '-S', '60', '-e', '1'])
    const r = await importJson(['--from', 'google-authenticator', file, '--user', 'bob'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.json.users).toMatchObject([{user: 'bob', interval: 60, digits: 6, recoveryCodes: 1, changed: true}])
    const secret = readFileSync(file, 'utf8').split('\n')[0]
    expectDecision(await check(store, 'bob', {code: await oathtool(secret, {interval: 60})}), true, 'code_accepted')
  })

  it('refuses a counter-based (HOTP, -c) file with exit 2 and FILE:LINE, writing nothing', async () => {
    const file = googleAuthenticator('ga-hotp', ['-c', '-e', '2'])
    const line = lineOf(file, /^" HOTP_COUNTER/)
    expect(line).toBeGreaterThan(1)
    const message = expectJsonError(await importJson(['--from', 'google-authenticator', file, '--user', 'alice']), 2)
    expect(message).toMatch(new RegExp(`^${escape(file)}:${line}: `))
    expect(existsSync(store.path)).toBe(false)
  })
})

describe('pam_oath users files', () => {
  const alice = hexOf(20, 1)
  const bob = hexOf(10, 2) // the shortest secret accepted
  const carol = hexOf(64, 3) // the longest
  const dave = hexOf(16, 4)

  it('imports HOTP/T30 and HOTP/T60 lines with their digits, skipping comments; codes verify; a re-import changes nothing', async () => {
    await enable(store)
    const file = writeFile(
      'users.oath',
      [
        '# migrated from the old bastion',
        `HOTP/T30\talice\t-\t${alice}`,
        '',
        `HOTP/T30/6 bob - ${bob} 0 123456 2024-01-01T00:00:00L`,
        `HOTP/T60/8 carol - ${carol}`,
        `HOTP/T30/7 dave - ${dave}`,
      ].join('\n') + '\n',
    )

    const r = await importJson(['--from', 'users.oath', file])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.json.users).toEqual([
      {user: 'alice', interval: 30, digits: 6, algorithm: 'SHA1', recoveryCodes: 0, changed: true},
      {user: 'bob', interval: 30, digits: 6, algorithm: 'SHA1', recoveryCodes: 0, changed: true},
      {user: 'carol', interval: 60, digits: 8, algorithm: 'SHA1', recoveryCodes: 0, changed: true},
      {user: 'dave', interval: 30, digits: 7, algorithm: 'SHA1', recoveryCodes: 0, changed: true},
    ])

    for (const [user, hex, interval, digits] of [
      ['alice', alice, 30, 6],
      ['bob', bob, 30, 6],
      ['carol', carol, 60, 8],
      ['dave', dave, 30, 7],
    ] as const) {
      expectDecision(await check(store, user, {code: oathtoolHex(hex, interval, digits)}), true, 'code_accepted')
    }

    const before = store.bytes()!
    const again = await importJson(['--from', 'users.oath', file])
    expect(again.code, again.stdout + again.stderr).toBe(0)
    expect(again.json.users.map((u: any) => u.changed)).toEqual([false, false, false, false])
    expect(store.bytes()!.equals(before)).toBe(true)
  })

  for (const {label, lines, bad} of [
    {label: 'a counter-based HOTP line', lines: [`HOTP/T30 alice - ${alice}`, `HOTP bob - ${bob} 5`], bad: 2},
    {label: 'an event-based HOTP/E/8 line', lines: ['# c', `HOTP/T30 alice - ${alice}`, `HOTP/E/8 bob - ${bob}`], bad: 3},
    {label: 'a malformed hex secret', lines: [`HOTP/T30 alice - ${alice}`, '', `HOTP/T30 bob - ${bob.slice(0, -1)}x`], bad: 3},
    {label: 'a 9-byte secret', lines: [`HOTP/T30 alice - ${hexOf(9, 5)}`], bad: 1},
    {label: 'a 65-byte secret', lines: [`HOTP/T30 alice - ${alice}`, `HOTP/T60 bob - ${hexOf(65, 6)}`], bad: 2},
  ]) {
    it(`refuses ${label} with exit 2 and FILE:LINE, writing nothing`, async () => {
      const file = writeFile('users.oath', lines.join('\n') + '\n')
      const message = expectJsonError(await importJson(['--from', 'users.oath', file]), 2)
      expect(message).toMatch(new RegExp(`^${escape(file)}:${bad}: `))
      expect(existsSync(store.path)).toBe(false)
    })
  }

  it('leaves an existing store byte-identical when a later line is bad', async () => {
    await renew(store, 'zed')
    const before = store.bytes()!
    const file = writeFile('users.oath', `HOTP/T30 alice - ${alice}\nHOTP/T30 bob - ${bob.slice(2)}zz\n`)
    const r = await store.run(['user:secret:import', '--from', 'users.oath', file])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`tfactl: ${file}:2: `)
    expect(store.bytes()!.equals(before)).toBe(true)
  })
})

describe('--secret-stdin', () => {
  it('imports a base32 secret as people type it; oathtool codes verify; the same secret again changes nothing', async () => {
    await enable(store)
    const secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ' // 20 bytes
    const typed = secret.toLowerCase().match(/.{4}/g)!.join(' ') + '\n'
    const r = await importJson(['alice', '--secret-stdin'], typed)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.json.users).toEqual([{user: 'alice', interval: 30, digits: 6, algorithm: 'SHA1', recoveryCodes: 0, changed: true}])
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')

    const before = store.bytes()!
    const again = await importJson(['alice', '--secret-stdin'], secret)
    expect(again.code, again.stdout + again.stderr).toBe(0)
    expect(again.json.users).toMatchObject([{user: 'alice', changed: false}])
    expect(store.bytes()!.equals(before)).toBe(true)
  })

  for (const [label, input] of [
    ['characters outside base32', 'JBSWY3DPEHPK3PX1JBSWY3DP'],
    ['a 9-byte secret', 'JBSWY3DPEHPK3PY'],
    ['a 65-byte secret', 'A'.repeat(104)],
    ['an empty input', ''],
  ]) {
    it(`refuses ${label} with exit 2, writing nothing`, async () => {
      expectJsonError(await importJson(['alice', '--secret-stdin'], input), 2)
      expect(existsSync(store.path)).toBe(false)
    })
  }

  it('imports for the invoking user when USERNAME is left out', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await importJson(['--secret-stdin'], 'JBSWY3DPEHPK3PXP\n')
      expect(r.code, r.stdout).toBe(0)
      expect(r.json.users).toMatchObject([{user: userInfo().username}])
    }
  })

  it("reads the secret from a writer slower than tfactl's start-up", async () => {
    const r = await new Promise<{code: number | null; stdout: string}>((done) => {
      const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1'}
      delete env.TFACTL_STORE
      delete env.SUDO_USER
      const child = spawn(process.execPath, [BIN, 'user:secret:import', 'alice', '--secret-stdin', '--json', '--store', store.path], {env})
      let stdout = ''
      child.stdout.on('data', (d) => (stdout += d))
      child.stdin.on('error', () => {})
      const timer = setTimeout(() => child.stdin.end('JBSWY3DPEHPK3PXP\n'), 4000)
      child.on('close', (code) => {
        clearTimeout(timer)
        done({code, stdout})
      })
    })
    expect(r.code, r.stdout).toBe(0)
    expect(JSON.parse(r.stdout).users).toMatchObject([{user: 'alice', changed: true}])
  }, 30_000)
})
