// Scripted provisioning: bulk enrolment from --users-file (validated whole, one write),
// idempotent re-runs with --if-missing, QR hand-out files, and `changed` on every mutating command.
import {spawn} from 'node:child_process'
import {existsSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {BIN, oathtool, tempStore} from '../helpers/cli.js'
import {decodeQrImage} from '../helpers/term-image.js'
import {check, enable, expectDecision, expectJsonError, renew, type TempStore} from './support.js'

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

/** Writes a users file into the test's directory and returns its absolute path. */
function usersFile(name: string, text: string): string {
  const path = join(store.dir, name)
  writeFileSync(path, text)
  return path
}

/**
 * Runs the CLI with `input` on a pipe whose writer is slower than tfactl's start-up (like
 * `ssh host cat users.txt | tfactl …`): the input is written after `delayMs`, or never if tfactl
 * has already exited by then.
 */
function runWithSlowStdin(args: string[], input: string, delayMs = 4000): Promise<{code: number | null; stdout: string; json: any}> {
  return new Promise((done) => {
    const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1'}
    delete env.TFACTL_STORE
    delete env.SUDO_USER
    const child = spawn(process.execPath, [BIN, ...args, '--store', store.path], {env})
    let stdout = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stdin.on('error', () => {})
    const timer = setTimeout(() => child.stdin.end(input), delayMs)
    child.on('close', (code) => {
      clearTimeout(timer)
      let json: any
      try {
        json = JSON.parse(stdout)
      } catch {}
      done({code, stdout, json})
    })
  })
}

const renewJson = (args: string[], input?: string) => store.run(['user:secret:renew', ...args, '--qr', 'none', '--json'], {input})
const mode = (path: string) => statSync(path).mode & 0o777

describe('bulk enrolment from --users-file', () => {
  it('enrols 1000 users in one write; an --if-missing re-run changes nothing; oathtool codes verify', async () => {
    await enable(store)
    const afterEnable = store.bytes()!
    const names = Array.from({length: 1000}, (_, i) => `op${String(i + 1).padStart(4, '0')}`)
    const file = usersFile('operators.txt', names.join('\n') + '\n')

    const first = await renewJson(['--users-file', file, '--if-missing'])
    expect(first.code, first.stderr).toBe(0)
    expect(first.json.users.map((u: any) => u.user)).toEqual(names)
    for (const u of first.json.users) {
      expect(u).toMatchObject({changed: true, pending: false, interval: 30, digits: 6})
      expect(u.secret).toMatch(/^[A-Z2-7]{32}$/)
      expect(u.uri).toContain(`secret=${u.secret}`)
    }
    expect(new Set(first.json.users.map((u: any) => u.secret)).size).toBe(1000)
    // One write: the backup kept by that write is the store as twofactor:enable left it.
    expect(readFileSync(`${store.path}.bak`).equals(afterEnable)).toBe(true)
    const status = await store.run(['twofactor:status', '--json'])
    expect(status.json.users).toMatchObject({total: 1000, configured: 1000})

    const stored = store.bytes()!
    const again = await renewJson(['--users-file', file, '--if-missing'])
    expect(again.code, again.stderr).toBe(0)
    expect(again.json.users).toEqual(names.map((user) => ({user, changed: false})))
    expect(store.bytes()!.equals(stored)).toBe(true)

    const bySecret = new Map<string, string>(first.json.users.map((u: any) => [u.user, u.secret]))
    const sample = names.filter((_, i) => i % 111 === 0) // 10 users spread over the list
    for (let i = 0; i < sample.length; i += 2) {
      const pair = sample.slice(i, i + 2)
      const runs = await Promise.all(pair.map(async (user) => check(store, user, {code: await oathtool(bySecret.get(user)!)})))
      for (const r of runs) expectDecision(r, true, 'code_accepted')
    }
  }, 120_000)

  it("--if-missing enrols only users without a secret and keeps the others' secrets", async () => {
    const alice = await renew(store, 'alice')
    const r = await renewJson(['alice', 'bob', '--if-missing'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users[0]).toEqual({user: 'alice', changed: false})
    expect(r.json.users[1]).toMatchObject({user: 'bob', changed: true})
    expect(r.json.users[1].secret).toMatch(/^[A-Z2-7]{32}$/)
    expect(r.json.users[1].uri).toMatch(/^otpauth:\/\/totp\//)
    const shown = await store.run(['user:secret:show', 'alice', '--qr', 'none', '--json'])
    expect(shown.json.secret).toBe(alice.secret)
  })

  it('accepts # comments, blank lines and surrounding whitespace, and adds positional names', async () => {
    const file = usersFile('list.txt', '# operators\n\n  alice  \n\tbob\r\n   \n# carol is on leave\ndave\n')
    const r = await renewJson(['erin', '--users-file', file])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users.map((u: any) => u.user)).toEqual(['erin', 'alice', 'bob', 'dave'])
    expect(r.json.users.every((u: any) => u.changed === true)).toBe(true)
  })

  it('reads the list from stdin with --users-file - alongside positional names', async () => {
    const r = await renewJson(['erin', '--users-file', '-'], '# from a pipe\nalice\nbob\n')
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users.map((u: any) => u.user)).toEqual(['erin', 'alice', 'bob'])
  })

  it('reads the list from stdin with --users-file - alone', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await renewJson(['--users-file', '-'], 'alice\n# comment\nbob\n')
      expect(r.code, r.stdout).toBe(0)
      expect(r.json.users.map((u: any) => u.user)).toEqual(['alice', 'bob'])
    }
  })

  it("reads --users-file - from a writer slower than tfactl's start-up", async () => {
    const r = await runWithSlowStdin(['user:secret:renew', 'erin', '--users-file', '-', '--qr', 'none', '--json'], 'alice\nbob\n')
    expect(r.code, r.stdout).toBe(0)
    expect(r.json.users.map((u: any) => u.user)).toEqual(['erin', 'alice', 'bob'])
  }, 30_000)

  it('writes nothing when one line holds a bad name, naming FILE:LINE (store absent)', async () => {
    const file = usersFile('bad.txt', 'alice\n# comment\n\nbob\n-carol\ndave\n')
    const message = expectJsonError(await renewJson(['--users-file', file]), 2)
    expect(message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:5: `))
    expect(existsSync(store.path)).toBe(false)
  })

  it('refuses a line with whitespace inside, naming FILE:LINE on stderr, and leaves the store byte-identical', async () => {
    await renew(store, 'zed')
    const before = store.bytes()!
    const file = usersFile('inner.txt', 'alice\n  bob smith  \ncarol\n')
    const r = await store.run(['user:secret:renew', '--users-file', file, '--qr', 'none'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`tfactl: ${file}:2: `)
    expect(store.bytes()!.equals(before)).toBe(true)
    const list = await store.run(['user:list', '--json'])
    expect(list.json.users.map((u: any) => u.user)).toEqual(['zed'])
  })

  it('writes nothing when a positional name is bad, even with a good --users-file', async () => {
    const file = usersFile('good.txt', 'alice\nbob\n')
    expectJsonError(await renewJson(['carol', 'bad name', '--users-file', file]), 2)
    expect(existsSync(store.path)).toBe(false)
  })

  it('exits 2 for a --users-file that cannot be read, writing nothing', async () => {
    expectJsonError(await renewJson(['--users-file', join(store.dir, 'missing.txt')]), 2)
    expect(existsSync(store.path)).toBe(false)
  })
})

describe('QR files for hand-out (--qr-dir)', () => {
  it("writes <user>.png and <user>.svg, 0600, whose PNG decodes with zbarimg to the user's URI", async () => {
    const dir = join(store.dir, 'handout')
    const file = usersFile('few.txt', 'alice\nbob\ncarol\n')
    const r = await renewJson(['--users-file', file, '--qr-dir', dir])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users).toHaveLength(3)
    for (const {user, uri} of r.json.users) {
      const png = join(dir, `${user}.png`)
      const svg = join(dir, `${user}.svg`)
      expect(mode(png), png).toBe(0o600)
      expect(mode(svg), svg).toBe(0o600)
      expect(decodeQrImage(png)).toEqual([uri])
      expect(readFileSync(svg, 'utf8')).toMatch(/<svg[\s>]/)
    }
  })

  it('writes files only for the users an --if-missing run enrolled', async () => {
    await renew(store, 'alice')
    const dir = join(store.dir, 'handout')
    const r = await renewJson(['alice', 'bob', '--if-missing', '--qr-dir', dir])
    expect(r.code, r.stderr).toBe(0)
    expect(existsSync(join(dir, 'alice.png'))).toBe(false)
    expect(existsSync(join(dir, 'alice.svg'))).toBe(false)
    expect(decodeQrImage(join(dir, 'bob.png'))).toEqual([r.json.users[1].uri])
  })
})

/** A mutating command run twice: changed true then false, exit 0 both times, no second write. */
async function expectIdempotent(args: string[], changedOf: (json: any) => boolean, input?: string) {
  const first = await store.run([...args, '--json'], {input})
  expect(first.code, first.stdout + first.stderr).toBe(0)
  expect(changedOf(first.json)).toBe(true)
  const written = store.bytes()!
  const second = await store.run([...args, '--json'], {input})
  expect(second.code, second.stdout + second.stderr).toBe(0)
  expect(changedOf(second.json)).toBe(false)
  expect(store.bytes()!.equals(written)).toBe(true)
}

const top = (json: any) => json.changed
const firstUser = (json: any) => {
  expect(json.users).toHaveLength(1)
  return json.users[0].changed
}

describe('idempotence: a second identical run reports changed false and exits 0', () => {
  it('twofactor:enable', async () => {
    await expectIdempotent(['twofactor:enable', '--window', '2', '--fail-delay', '0'], top)
  })

  it('twofactor:disable', async () => {
    await enable(store)
    await expectIdempotent(['twofactor:disable'], top)
  })

  it('user:secret:unset', async () => {
    await renew(store, 'alice')
    await expectIdempotent(['user:secret:unset', 'alice', '--yes'], top)
  })

  it.skipIf(process.getuid?.() !== 0)('user:unlock (as root)', async () => {
    await enable(store, '--max-failures', '1')
    await renew(store, 'alice')
    expectDecision(await check(store, 'alice', {code: '000000'}), false, 'code_invalid')
    expectDecision(await check(store, 'alice', {code: '000000'}), false, 'locked_out')
    await expectIdempotent(['user:unlock', 'alice'], top)
  })

  it('user:secret:import of the same secret', async () => {
    await expectIdempotent(['user:secret:import', 'alice', '--secret-stdin'], firstUser, 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n')
  })

  it('user:secret:renew --if-missing', async () => {
    await expectIdempotent(['user:secret:renew', 'alice', '--if-missing', '--qr', 'none'], firstUser)
  })
})
