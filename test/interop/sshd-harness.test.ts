// Interop: prove the sshd + pam_oath test harness (test/helpers/sshd.ts) with a
// hand-written pam_oath usersfile, before tfactl itself manages that file.
// Real OpenSSH, real PAM (Debian's stock sshd stack + one pam_oath line, bind-
// mounted in a private mount namespace), real pam_oath from libpam-oath.
import {createHash, randomBytes} from 'node:crypto'
import {existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {
  buildSshdPamConfig,
  canRunSshd,
  createUser,
  generateKeyPair,
  HOST_PAM_SSHD,
  installAuthorizedKey,
  oathtoolTotp,
  randomUserName,
  removeUser,
  sshLogin,
  startSshd,
  writeUsersFile,
  type KeyPair,
  type SshdHandle,
} from '../helpers/sshd.js'

const reason = canRunSshd()
if (reason) console.warn(`[sshd-harness] skipped: ${reason}`)

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex')
const OATH_PROMPT = /One-time password \(OATH\)/
const WINDOW = 3

describe.skipIf(reason !== null)('sshd + pam_oath harness', {timeout: 30_000}, () => {
  const hostPamSum = reason ? '' : sha256(HOST_PAM_SSHD)
  const alice = randomUserName('tfaa') // in the usersfile, password + TOTP
  const bob = randomUserName('tfab') // NOT in the usersfile
  const carol = randomUserName('tfac') // in the usersfile, logs in with a key
  const pw = {[alice]: `A-${randomBytes(6).toString('hex')}`, [bob]: `B-${randomBytes(6).toString('hex')}`, [carol]: `C-${randomBytes(6).toString('hex')}`}
  const aliceSecret = randomBytes(20).toString('hex')
  const carolSecret = randomBytes(20).toString('hex')
  let dir = ''
  let usersfile = ''
  let sshd: SshdHandle | undefined
  let carolKey: KeyPair
  // The first good code and the Unix time it was generated for (tests 1, 3, 4 reuse it).
  let goodCode = ''
  let goodAt = 0

  const aliceLine = () =>
    readFileSync(usersfile, 'utf8')
      .split('\n')
      .find((l) => l.split(/\s+/)[1] === alice)!

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tfactl-oath-'))
    usersfile = join(dir, 'users.oath')
    writeUsersFile(usersfile, [
      '# pam_oath usersfile written by hand for the harness test',
      `HOTP/T30/6\t${alice}\t-\t${aliceSecret}`,
      `HOTP/T30/6\t${carol}\t-\t${carolSecret}`,
    ])
    for (const u of [alice, bob, carol]) createUser(u, pw[u])
    carolKey = generateKeyPair()
    installAuthorizedKey(carol, carolKey.publicKey)
    sshd = await startSshd({pamConfig: buildSshdPamConfig({usersfile, window: WINDOW})})
  }, 30_000)

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && sshd) console.log(`[sshd-harness] sshd log:\n${sshd.logs()}`)
  })

  afterAll(async () => {
    try {
      await sshd?.stop()
    } finally {
      for (const u of [alice, bob, carol]) removeUser(u)
      if (dir) rmSync(dir, {recursive: true, force: true})
    }
    // The host's PAM file was never touched.
    expect(sha256(HOST_PAM_SSHD)).toBe(hostPamSum)
  }, 30_000)

  const login = (user: string, extra: {code?: string; password?: string; privateKey?: Buffer; command?: string} = {}) =>
    sshLogin({port: sshd!.port, user, password: extra.password ?? pw[user], ...extra, timeoutMs: 15_000})

  it('runs with our PAM stack while the host /etc/pam.d/sshd stays unchanged', () => {
    expect(sha256(HOST_PAM_SSHD)).toBe(hostPamSum)
    expect(readFileSync(HOST_PAM_SSHD, 'utf8')).not.toContain('pam_oath')
    expect(sshd!.logs()).toContain(`Server listening on 127.0.0.1 port ${sshd!.port}`)
  })

  it('(1) password + correct TOTP logs in, and pam_oath rewrites the usersfile', async () => {
    goodAt = Math.floor(Date.now() / 1000)
    goodCode = oathtoolTotp(aliceSecret, {at: goodAt})
    const before = statSync(usersfile)
    const r = await login(alice, {code: goodCode, command: 'id -un'})
    expect(r, JSON.stringify(r)).toMatchObject({ok: true, exitCode: 0})
    expect(r.stdout?.trim()).toBe(alice)
    expect(r.prompts).toHaveLength(2)
    expect(r.prompts[0]).toMatch(/assword/)
    expect(r.prompts[1]).toBe(`One-time password (OATH) for \`${alice}': `)

    // What pam_oath wrote back: TAB-separated type, user, password field, secret,
    // moving factor, last OTP, local-time timestamp with a literal "L" suffix.
    const after = statSync(usersfile)
    const fields = aliceLine().split('\t')
    console.log(`[sshd-harness] usersfile after login:\n${readFileSync(usersfile, 'utf8')}`)
    expect(fields).toHaveLength(7)
    expect(fields.slice(0, 4)).toEqual(['HOTP/T30/6', alice, '-', aliceSecret])
    expect(fields[4]).toMatch(/^\d+$/)
    expect(fields[5]).toBe(goodCode)
    expect(fields[6]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dL$/)
    // Replaced by rename (new inode), mode 0600, ownership preserved, no lock/temp left.
    expect(after.ino).not.toBe(before.ino)
    expect(after.mode & 0o777).toBe(0o600)
    expect([after.uid, after.gid]).toEqual([0, 0])
    expect(existsSync(`${usersfile}.lock`)).toBe(false)
    expect(existsSync(`${usersfile}.new`)).toBe(false)
    // Other lines (comment, carol) are copied verbatim.
    expect(readFileSync(usersfile, 'utf8')).toContain(`# pam_oath usersfile written by hand`)
    expect(readFileSync(usersfile, 'utf8')).toContain(`HOTP/T30/6\t${carol}\t-\t${carolSecret}\n`)
  })

  it('(2) a wrong code is denied', async () => {
    const wrong = oathtoolTotp(aliceSecret, {at: goodAt + 3600}) // far outside the window
    const lineBefore = aliceLine()
    const r = await login(alice, {code: wrong})
    expect(r.ok).toBe(false)
    expect(r.prompts.some((p) => OATH_PROMPT.test(p))).toBe(true)
    expect(aliceLine()).toBe(lineBefore)
  })

  it('(3) replaying the same good code is denied', async () => {
    const r = await login(alice, {code: goodCode})
    expect(r.ok).toBe(false)
    expect(r.prompts.some((p) => OATH_PROMPT.test(p))).toBe(true)
  })

  it('(3b) replay protection is by time step: an unused code of an earlier step is denied, a later one accepted', async () => {
    // Both are inside window=3 around now; only the step relative to the last accepted one differs.
    const older = oathtoolTotp(aliceSecret, {at: goodAt - 30})
    const denied = await login(alice, {code: older})
    expect(denied.ok, JSON.stringify(denied)).toBe(false)

    const newer = oathtoolTotp(aliceSecret, {at: goodAt + 30})
    const accepted = await login(alice, {code: newer})
    expect(accepted, JSON.stringify(accepted)).toMatchObject({ok: true})
    expect(aliceLine().split('\t')[5]).toBe(newer)
    console.log(`[sshd-harness] after a +1 step login: ${aliceLine()}`)
  })

  it('(4) a user not in the usersfile logs in with the password alone (user_unknown=ignore)', async () => {
    const r = await login(bob, {command: 'id -un'})
    expect(r, JSON.stringify(r)).toMatchObject({ok: true, exitCode: 0})
    expect(r.stdout?.trim()).toBe(bob)
    expect(r.prompts).toHaveLength(1)
    expect(r.prompts[0]).toMatch(/assword/)
  })

  it('(4b) a wrong system password is denied before any OATH prompt', async () => {
    const r = await login(alice, {password: 'not-the-password', code: oathtoolTotp(aliceSecret)})
    expect(r.ok).toBe(false)
    expect(r.prompts.some((p) => OATH_PROMPT.test(p))).toBe(false)
  })

  it('(5) key-based login of a user in the usersfile succeeds without any prompt', async () => {
    const lineBefore = readFileSync(usersfile, 'utf8')
    const r = await login(carol, {password: undefined, privateKey: carolKey.privateKey, command: 'id -un'})
    expect(r, JSON.stringify(r)).toMatchObject({ok: true, exitCode: 0})
    expect(r.stdout?.trim()).toBe(carol)
    expect(r.prompts).toEqual([])
    expect(r.methods).toEqual(['publickey'])
    expect(readFileSync(usersfile, 'utf8')).toBe(lineBefore) // PAM auth (and pam_oath) never ran
  })

  it('(6) a stale <usersfile>.lock makes a correct code fail (Debian opens it O_EXCL)', async () => {
    const code = oathtoolTotp(aliceSecret, {at: goodAt + 60}) // newer than the last accepted step
    writeFileSync(`${usersfile}.lock`, '', {mode: 0o600})
    try {
      const lineBefore = aliceLine()
      const r = await login(alice, {code})
      expect(r.ok).toBe(false)
      expect(aliceLine()).toBe(lineBefore)
      expect(existsSync(`${usersfile}.lock`)).toBe(true) // not pam_oath's lock, so it leaves it alone
    } finally {
      rmSync(`${usersfile}.lock`, {force: true})
    }
    // The very same code works once the lock file is gone: the lock was the only reason.
    const r2 = await login(alice, {code})
    expect(r2, JSON.stringify(r2)).toMatchObject({ok: true})
    expect(aliceLine().split('\t')[5]).toBe(code)
  })

  it('(7) a missing usersfile denies everyone, even users that would be "unknown"', async () => {
    renameSync(usersfile, `${usersfile}.away`)
    try {
      const r = await login(bob)
      expect(r.ok).toBe(false)
      expect(r.prompts.some((p) => OATH_PROMPT.test(p))).toBe(true) // prompted, then AUTH_ERR
    } finally {
      renameSync(`${usersfile}.away`, usersfile)
    }
  })
})
