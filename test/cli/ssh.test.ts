// ssh:sync, ssh:sync --check, ssh:config and doctor through the real CLI; the users file is
// a temporary one (the real /etc/users.oath is never touched). The same file with real sshd
// and pam_oath: test/interop/ssh-e2e.test.ts.
import {chmodSync, existsSync, readdirSync, readFileSync, renameSync, statSync, watch, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {formatOathTime, OATH_HEADER, pamOathLine} from '../../src/core/oath.js'
import {hotp} from '../../src/core/totp.js'
import {Store} from '../../src/store/file/store.js'
import {tempStore} from '../helpers/cli.js'
import {check, enable, expectDecision, expectJsonError, renew, type TempStore, withinOneStep} from './support.js'

let store: TempStore
let oath: string
beforeEach(() => {
  store = tempStore()
  oath = join(store.dir, 'users.oath')
})
afterEach(() => {
  store.cleanup()
})

const hex = (secret: string) => base32Decode(secret)!.toString('hex')
const codeAt = (secret: string, step: number, digits = 6) => hotp(base32Decode(secret)!, step, digits)
const nowStep = () => Math.floor(Date.now() / 30_000)
const fileText = () => readFileSync(oath, 'utf8')
/** The users file's user lines as field lists. */
const lines = () =>
  fileText()
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split('\t'))
const lineOf = (user: string) => lines().find((f) => f[1] === user)

async function sync(...flags: string[]) {
  const r = await store.run(['ssh:sync', '--oath-file', oath, ...flags, '--json'])
  expect(r.code, r.stderr).toBe(0)
  return r.json
}

async function expectFresh(fresh = true) {
  const r = await store.run(['ssh:sync', '--check', '--json'])
  expect(r.code, r.stdout + r.stderr).toBe(fresh ? 0 : 1)
  expect(r.json.fresh).toBe(fresh)
  return r.json
}

/** Rewrites one user's trailing fields the way pam_oath does after a login: new file, rename. */
function pamOathRecords(user: string, otp: string, counter = '1') {
  const text = fileText()
    .split('\n')
    .map((l) => (l.split('\t')[1] === user ? [...l.split('\t').slice(0, 4), counter, otp, formatOathTime(Date.now())].join('\t') : l))
    .join('\n')
  writeFileSync(`${oath}.pam`, text, {mode: 0o600})
  renameSync(`${oath}.pam`, oath)
}

function noLeftovers() {
  expect(readdirSync(store.dir).filter((n) => n.startsWith('users.oath') && n !== 'users.oath')).toEqual([])
}

describe('ssh:sync', () => {
  it('writes a private users file with no user lines until 2FA and SSH 2FA are on, and remembers its path', async () => {
    await enable(store)
    await renew(store, 'alice')
    const first = await sync()
    expect(first).toEqual({path: oath, users: [], imported: [], changed: true})
    expect(fileText()).toBe(`${OATH_HEADER}\n`)
    const st = statSync(oath)
    expect([st.mode & 0o777, st.uid, st.gid]).toEqual([0o600, 0, 0])
    expect((await store.run(['twofactor:status', '--json'])).json).not.toHaveProperty('oathFile') // public settings unchanged

    const again = await store.run(['ssh:sync', '--json']) // no --oath-file: the remembered path
    expect(again.json).toEqual({path: oath, users: [], imported: [], changed: false})
    noLeftovers()
  })

  it('lists every user with a secret as HOTP/T<interval>/<digits> TAB user TAB - TAB hex', async () => {
    await enable(store, '--ssh')
    const alice = await renew(store, 'alice')
    const bob = await renew(store, 'bob', '--interval', '60', '--digits', '8')
    await store.run(['user:bypass', 'carol', '--json']) // a record without a secret
    expect((await sync()).users).toEqual(['alice', 'bob'])
    expect(fileText()).toBe(`${OATH_HEADER}\nHOTP/T30/6\talice\t-\t${hex(alice.secret)}\nHOTP/T60/8\tbob\t-\t${hex(bob.secret)}\n`)
    await expectFresh()
  })

  it('is kept in step by every command that changes what the file should hold', async () => {
    await enable(store, '--ssh', '--oath-file', oath)
    expect(existsSync(oath)).toBe(true)
    const alice = await renew(store, 'alice')
    expect(lineOf('alice')).toEqual(['HOTP/T30/6', 'alice', '-', hex(alice.secret)])
    const renewed = await renew(store, 'alice')
    expect(lineOf('alice')![3]).toBe(hex(renewed.secret))
    await renew(store, 'bob')
    expect(lines().map((f) => f[1])).toEqual(['alice', 'bob'])
    await expectFresh()

    expect((await store.run(['user:secret:unset', 'bob', '--yes', '--json'])).code).toBe(0)
    expect(lines().map((f) => f[1])).toEqual(['alice'])
    expect((await store.run(['twofactor:disable', '--json'])).code).toBe(0)
    expect(lines()).toEqual([])
    await expectFresh()
    await enable(store)
    expect(lines().map((f) => f[1])).toEqual(['alice'])
    await enable(store, '--no-ssh')
    expect(lines()).toEqual([])
    await renew(store, 'root') // STIG mode needs an administrator with a secret
    await enable(store, '--stig') // STIG mode turns SSH 2FA back on
    expect(
      lines()
        .map((f) => f[1])
        .sort(),
    ).toEqual(['alice', 'root'])
    await expectFresh()
    noLeftovers()
  })

  it('reports the users file in twofactor:enable', async () => {
    const r = await store.run(['twofactor:enable', '--ssh', '--oath-file', oath, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({enabled: true, ssh: true, oathFile: oath, changed: true})
    expect((await store.run(['twofactor:enable', '--oath-file', 'relative/users.oath', '--json'])).code).toBe(2)
  })

  it('refuses (exit 2) users pam_oath cannot check instead of leaving them out, changing nothing', async () => {
    await enable(store)
    await renew(store, 'alice')
    await renew(store, 'bob')
    // No command makes such secrets yet (an import could): put them in the store directly.
    await new Store(store.path).update((doc) => {
      doc.users.get('alice')!.algorithm = 'SHA256'
    })
    const before = store.bytes()
    const r = await store.run(['twofactor:enable', '--ssh', '--oath-file', oath, '--json'])
    expect(expectJsonError(r, 2)).toMatch(/alice uses SHA256 codes/)
    expect(r.json.error.code).toBe('oath_unsupported')
    expect(store.bytes()).toEqual(before)
    expect(existsSync(oath)).toBe(false)
    noLeftovers()

    // With SSH 2FA on, the change that would make a user inexpressible is the one refused.
    await new Store(store.path).update((doc) => {
      doc.users.get('alice')!.algorithm = 'SHA1'
    })
    await enable(store, '--ssh', '--oath-file', oath)
    const fileBefore = fileText()
    await expect(
      new Store(store.path).update((doc) => {
        doc.users.get('bob')!.secret = 'A'.repeat(64) // 40 bytes: more than pam_oath's 32
      }),
    ).rejects.toMatchObject({exit: 2, code: 'oath_unsupported'})
    expect(fileText()).toBe(fileBefore)
    expect((await store.run(['user:list', '--json'])).code).toBe(0)
  })

  it('refuses (exit 2) to take over a users file it did not write while that would drop users', async () => {
    await enable(store, '--ssh')
    const alice = await renew(store, 'alice')
    const foreign = `HOTP/T30/6\tlegacy\t-\t${'ab'.repeat(20)}\nHOTP/T30/6\talice\t-\t${'cd'.repeat(20)}\n`
    writeFileSync(oath, foreign, {mode: 0o600})
    const before = store.bytes()
    for (const args of [
      ['ssh:sync', '--oath-file', oath],
      ['twofactor:enable', '--oath-file', oath],
    ]) {
      const r = await store.run([...args, '--json'])
      expect(expectJsonError(r, 2)).toMatch(/was not written by tfactl and lists users who would lose 2FA over SSH \(legacy\)/)
      expect(r.json.error.code).toBe('oath_foreign')
    }
    expect(fileText()).toBe(foreign)
    expect(store.bytes()).toEqual(before)
    noLeftovers()

    writeFileSync(oath, foreign.split('\n').slice(1).join('\n'), {mode: 0o600}) // legacy dealt with
    await sync()
    expect(lines()).toEqual([['HOTP/T30/6', 'alice', '-', hex(alice.secret)]])
    writeFileSync(oath, `${fileText()}HOTP/T30/6\tlegacy\t-\t${'ab'.repeat(20)}\n`) // ours now: hand edits go
    await sync()
    expect(lines().map((f) => f[1])).toEqual(['alice'])
  })

  it('waits for a lock pam_oath holds and never uses the .new name', async () => {
    await enable(store, '--ssh', '--oath-file', oath)
    const seen: string[] = []
    const watcher = watch(store.dir, (_event, name) => name && seen.push(name))
    try {
      writeFileSync(`${oath}.lock`, '', {mode: 0o600}) // as pam_oath creates it: empty
      setTimeout(() => renameSync(`${oath}.lock`, `${oath}.gone`), 1500)
      const started = Date.now()
      const r = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])
      expect(r.code, r.stderr).toBe(0)
      expect(Date.now() - started).toBeGreaterThanOrEqual(1400)
      expect(lineOf('alice')![3]).toBe(hex(r.json.users[0].secret))
      await renew(store, 'bob')
    } finally {
      watcher.close()
    }
    expect(seen.some((n) => n.endsWith('.new'))).toBe(false)
    expect(seen.some((n) => n.includes('.tfactl-tmp-'))).toBe(true)
    expect(readdirSync(store.dir).filter((n) => n.startsWith('users.oath') && n !== 'users.oath')).toEqual(['users.oath.gone'])
  })

  it('gives up with exit 3 after 10 s while the lock stays, changing nothing', {timeout: 30_000}, async () => {
    await enable(store, '--ssh', '--oath-file', oath)
    const alice = await renew(store, 'alice')
    writeFileSync(`${oath}.lock`, '', {mode: 0o600})
    const storeBefore = store.bytes()
    const r = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])
    expect(expectJsonError(r, 3)).toMatch(/users\.oath\.lock exists/)
    expect(store.bytes()).toEqual(storeBefore)
    expect(lineOf('alice')![3]).toBe(hex(alice.secret))
    expect(existsSync(`${oath}.lock`)).toBe(true) // not ours: left alone
  })

  it('removes a <file>.new an interrupted pam_oath left (it would make every login fail)', async () => {
    await enable(store, '--ssh', '--oath-file', oath)
    writeFileSync(`${oath}.new`, 'half a file', {mode: 0o600})
    const r = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/removed .*users\.oath\.new, left behind by an interrupted pam_oath login/)
    noLeftovers()
  })

  it('removes a lock left by a killed tfactl', async () => {
    await enable(store, '--ssh', '--oath-file', oath)
    writeFileSync(`${oath}.lock`, 'tfactl 999999999\n', {mode: 0o600})
    const r = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/removed .*users\.oath\.lock, left behind by tfactl process 999999999/)
    noLeftovers()
  })
})

describe('ssh:sync --check', () => {
  beforeEach(async () => {
    await enable(store, '--ssh', '--oath-file', oath)
    await renew(store, 'alice')
    await renew(store, 'bob')
  })

  it("ignores pam_oath's trailing fields", async () => {
    pamOathRecords('alice', '123456', '4')
    expect(await expectFresh()).toEqual({path: oath, fresh: true, exists: true, missing: [], extra: [], different: []})
  })

  it('exits 1 and names the stale users, writing nothing and logging no audit line', async () => {
    const audit = join(store.dir, 'state', 'store.json.audit.log')
    const auditBefore = readFileSync(audit, 'utf8')
    const good = fileText()
    const [a, b] = lines()
    writeFileSync(oath, `${OATH_HEADER}\n${[a[0], a[1], a[2], 'ab'.repeat(20)].join('\t')}\nHOTP/T30/6\tmallory\t-\t${b[3]}\n`, {mode: 0o600})
    const stale = await expectFresh(false)
    expect(stale).toMatchObject({missing: ['bob'], extra: ['mallory'], different: ['alice']})
    const human = await store.run(['ssh:sync', '--check'])
    expect(human.stdout).toMatch(/stale \(missing bob; should not list mallory; wrong line for alice\): run tfactl ssh:sync/)
    expect(readFileSync(audit, 'utf8')).toBe(auditBefore)
    await sync()
    expect(fileText()).toBe(good)
    await expectFresh()
  })

  it('exits 1 when the file is missing', async () => {
    renameSync(oath, `${oath}.away`)
    expect(await expectFresh(false)).toMatchObject({exists: false, missing: ['alice', 'bob']})
  })
})

describe('one replay state with pam_oath', () => {
  it("writes a code login:check accepted into the user's line, as pam_oath would", async () => {
    await enable(store, '--ssh', '--oath-file', oath)
    const {secret} = await renew(store, 'alice')
    const step = await withinOneStep(30, async () => {
      const s = nowStep()
      expectDecision(await check(store, 'alice', {code: codeAt(secret, s)}), true, 'code_accepted')
      return s
    })
    const f = lineOf('alice')!
    expect(f.slice(0, 6)).toEqual(['HOTP/T30/6', 'alice', '-', hex(secret), '0', codeAt(secret, step)])
    expect(f[6]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dL$/)
  })

  it('refuses codes of the step pam_oath recorded and earlier ones, and accepts a later one', async () => {
    await enable(store, '--ssh', '--window', '2', '--oath-file', oath)
    const {secret} = await renew(store, 'alice')
    await withinOneStep(30, async () => {
      const s = nowStep()
      pamOathRecords('alice', codeAt(secret, s + 1))
      expectDecision(await check(store, 'alice', {service: 'ssh', code: codeAt(secret, s + 1)}), false, 'code_replayed')
      expectDecision(await check(store, 'alice', {service: 'ssh', code: codeAt(secret, s)}), false, 'code_replayed')
      expectDecision(await check(store, 'alice', {code: codeAt(secret, s - 1)}), false, 'code_replayed')
      expectDecision(await check(store, 'alice', {service: 'ssh', code: codeAt(secret, s + 2)}), true, 'code_accepted')
    })
    expect(lineOf('alice')![5]).not.toBe('') // the newer code is now the recorded one
  })

  it("keeps pam_oath's fields byte for byte when other users change, and restores them after disable and re-enable", async () => {
    await enable(store, '--ssh', '--window', '2', '--oath-file', oath)
    const {secret} = await renew(store, 'alice')
    const step = nowStep()
    pamOathRecords('alice', codeAt(secret, step), '7')
    const recorded = lineOf('alice')!.join('\t')
    await renew(store, 'bob')
    await sync()
    expect(lineOf('alice')!.join('\t')).toBe(recorded)

    expect((await store.run(['twofactor:disable', '--json'])).code).toBe(0)
    expect(lineOf('alice')).toBeUndefined()
    await enable(store)
    // Rebuilt from the store's last accepted step (imported before the line was dropped).
    expect(lineOf('alice')!.slice(0, 6)).toEqual(['HOTP/T30/6', 'alice', '-', hex(secret), '0', codeAt(secret, step)])
    expectDecision(await check(store, 'alice', {service: 'ssh', code: codeAt(secret, step)}), false, 'code_replayed')
    const list = await store.run(['user:list', '--json'])
    expect(list.json.users.find((u: any) => u.user === 'alice').lastUsedAt).not.toBeNull()
  })

  it("starts a renewed secret without the old secret's replay fields", async () => {
    await enable(store, '--ssh', '--oath-file', oath)
    const old = await renew(store, 'alice')
    pamOathRecords('alice', codeAt(old.secret, nowStep()))
    const renewed = await renew(store, 'alice')
    expect(lineOf('alice')).toEqual(['HOTP/T30/6', 'alice', '-', hex(renewed.secret)])
  })
})

describe('ssh:config', () => {
  it("prints the PAM line with the store's users file and window, and the sshd settings", async () => {
    await enable(store, '--ssh', '--window', '3', '--oath-file', oath)
    const r = await store.run(['ssh:config', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toEqual({
      usersFile: oath,
      configured: true,
      window: 3,
      pam: {
        file: '/etc/pam.d/sshd',
        after: '@include common-auth',
        line: `auth [success=ok user_unknown=ignore default=die] pam_oath.so usersfile=${oath} window=3`,
      },
      sshd: {file: '/etc/ssh/sshd_config', lines: ['UsePAM yes', 'KbdInteractiveAuthentication yes']},
    })
    const human = await store.run(['ssh:config'])
    expect(human.stdout).toContain(pamOathLine(oath, 3))
    expect(human.stdout).toMatch(/^UsePAM yes$/m)
    expect(human.stdout).toMatch(/^KbdInteractiveAuthentication yes$/m)
  })

  it('falls back to /etc/users.oath and warns until a users file is configured', async () => {
    const r = await store.run(['ssh:config', '--json'])
    expect(r.code).toBe(0)
    expect(r.json).toMatchObject({usersFile: '/etc/users.oath', configured: false, window: 1})
    expect(r.stderr).toMatch(/no users file is configured yet/)
  })
})

describe('doctor', () => {
  let pamFile: string
  let sshdConfig: string
  beforeEach(async () => {
    pamFile = join(store.dir, 'pam.d-sshd')
    sshdConfig = join(store.dir, 'sshd_config')
    await enable(store, '--ssh', '--oath-file', oath)
    await renew(store, 'alice')
    writeFileSync(pamFile, `auth required pam_env.so\n@include common-auth\n${pamOathLine(oath, 1)}\naccount required pam_nologin.so\n`)
    writeFileSync(sshdConfig, 'UsePAM yes\nKbdInteractiveAuthentication yes\n')
  })

  const doctor = () => store.run(['doctor', '--pam-file', pamFile, '--sshd-config', sshdConfig, '--json'])
  const statusOf = (r: any, name: string) => r.json.checks.filter((c: any) => c.check === name).map((c: any) => c.status)
  /** The exit code says whether anything was found; the clock is whatever this host's is. */
  const expectExit = (r: any) => {
    expect(r.code).toBe(r.json.findings === 0 ? 0 : 1)
    expect(r.json.ok).toBe(r.json.findings === 0)
  }

  it('finds nothing wrong in a correct setup', async () => {
    const r = await doctor()
    expectExit(r)
    expect(statusOf(r, 'store')).toEqual(['ok'])
    expect(statusOf(r, 'users file')).toEqual(['ok'])
    expect(statusOf(r, 'sshd PAM')).toEqual(['ok'])
    expect(statusOf(r, 'sshd settings')).toEqual(['ok'])
    expect(statusOf(r, 'clock')).toHaveLength(1)
    expect(r.json.findings).toBe(statusOf(r, 'clock')[0] === 'finding' ? 1 : 0)
  })

  it('reports a stale or exposed users file, a leftover lock, and a PAM file without pam_oath', async () => {
    await renew(store, 'bob')
    writeFileSync(oath, `${OATH_HEADER}\n`)
    chmodSync(oath, 0o644)
    writeFileSync(`${oath}.lock`, '')
    writeFileSync(pamFile, '@include common-auth\n')
    writeFileSync(sshdConfig, 'UsePAM yes\nKbdInteractiveAuthentication no\n')
    const r = await doctor()
    expect(r.code).toBe(1)
    const messages = r.json.checks
      .filter((c: any) => c.status === 'finding')
      .map((c: any) => c.message)
      .join('\n')
    expect(messages).toMatch(/users\.oath\.lock exists/)
    expect(messages).toMatch(/mode 644/)
    expect(messages).toMatch(/stale \(alice missing, bob missing\)/)
    expect(messages).toMatch(/does not use pam_oath/)
    expect(messages).toMatch(/KbdInteractiveAuthentication yes/)
  })

  it('reports a PAM line with another window or file, or before the password module', async () => {
    writeFileSync(pamFile, `${pamOathLine('/etc/other.oath', 5)}\n@include common-auth\n`)
    const r = await doctor()
    expect(r.code).toBe(1)
    const pam = r.json.checks.find((c: any) => c.check === 'sshd PAM')
    expect(pam.status).toBe('finding')
    expect(pam.message).toMatch(/usersfile=\/etc\/other\.oath/)
    expect(pam.message).toMatch(/window is 5, the store's is 1/)
    expect(pam.message).toMatch(/does not come after the password module/)
  })

  it('reports SSH 2FA without a users file, and store files others can read', async () => {
    const other = tempStore()
    try {
      const e = await other.run(['twofactor:enable', '--ssh', '--json'])
      expect(e.code).toBe(0)
      chmodSync(other.path, 0o644)
      const r = await other.run(['doctor', '--pam-file', pamFile, '--sshd-config', sshdConfig, '--json'])
      expect(r.code).toBe(1)
      expect(statusOf(r, 'store')).toEqual(['finding'])
    } finally {
      other.cleanup()
    }
    const third = tempStore()
    try {
      expect((await third.run(['twofactor:enable', '--ssh', '--json'])).code).toBe(0)
      const r = await third.run(['doctor', '--pam-file', pamFile, '--sshd-config', sshdConfig, '--json'])
      expect(r.code).toBe(1)
      expect(r.json.checks.find((c: any) => c.check === 'users file').message).toMatch(/no pam_oath users file is configured: run tfactl ssh:sync/)
    } finally {
      third.cleanup()
    }
  })
})
