// The emergency bypass when things are broken: each broken state is made for real (key missing
// or wrong, store corrupt or deleted, .bak corrupt too, a pam_oath .lock left by a crash, the
// store lock held by a stopped process, STIG mode), the documented command gets 2FA off (or says
// exactly why not), nothing is deleted, and a password SSH login of a user with a secret then
// passes without a code through real sshd + pam_oath. One sshd for the whole file.
import {type ChildProcess, spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {chmodSync, cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {sidecars} from '../../src/store/paths.js'
import {BIN, ROOT, type Run, tempStore} from '../helpers/cli.js'
import {canRunSshd, createUser, insertPamLine, randomUserName, removeUser, sshLogin, type SshdHandle, startSshd} from '../helpers/sshd.js'

const reason = canRunSshd()
if (reason) console.warn(`[emergency] skipped: ${reason}`)

const OATH_PROMPT = /One-time password \(OATH\)/

describe.skipIf(reason !== null)('emergency: 2FA off whatever state the files are in', {timeout: 120_000}, () => {
  const store = tempStore()
  const state = dirname(store.path)
  const template = join(store.dir, 'template')
  const oath = join(store.dir, 'users.oath')
  const alice = randomUserName('tfxa')
  const password = `P-${randomBytes(8).toString('hex')}`
  let sshd: SshdHandle | undefined
  let oathTemplate = ''
  let holder: ChildProcess | undefined

  const run = (...args: string[]): Promise<Run> => store.run(args)
  const json = async (...args: string[]): Promise<Run> => store.run([...args, '--json'])
  const ok = async (...args: string[]): Promise<any> => {
    const r = await json(...args)
    expect(r.code, `${args.join(' ')}: ${r.stdout} ${r.stderr}`).toBe(0)
    return r.json
  }
  const files = () => readdirSync(state).sort()
  const bytes = (path: string) => readFileSync(path)
  const usersIn = (path: string) =>
    readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('HOTP'))

  const login = (code?: string) => sshLogin({port: sshd!.port, user: alice, password, code, command: 'id -un', timeoutMs: 30_000})
  /** A password login with no code asked: what 2FA off means over SSH. */
  async function expectPasswordOnly(): Promise<void> {
    const r = await login()
    expect(r, JSON.stringify(r)).toMatchObject({ok: true, exitCode: 0})
    expect(r.stdout?.trim()).toBe(alice)
    expect(r.prompts).toHaveLength(1)
    expect(r.prompts[0]).toMatch(/assword/)
  }
  async function expectCodeAsked(): Promise<void> {
    const r = await login('000000')
    expect(r.ok, JSON.stringify(r)).toBe(false)
    expect(r.prompts.some((p) => OATH_PROMPT.test(p))).toBe(true)
  }

  /** Back to the healthy state: 2FA and SSH 2FA on, alice enrolled, her line in the users file. */
  function reset(): void {
    rmSync(state, {recursive: true, force: true})
    cpSync(template, state, {recursive: true})
    chmodSync(state, 0o700)
    writeFileSync(oath, oathTemplate, {mode: 0o600})
    for (const f of readdirSync(store.dir)) if (f.startsWith('users.oath.')) rmSync(join(store.dir, f), {force: true})
  }

  const onExit = () => {
    if (sshd && sshd.pid > 1) {
      try {
        process.kill(-sshd.pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    removeUser(alice)
  }

  beforeAll(async () => {
    process.once('exit', onExit)
    createUser(alice, password)
    await ok('twofactor:enable', '--ssh', '--window', '1', '--fail-delay', '0', '--oath-file', oath)
    await ok('user:secret:renew', alice, '--qr', 'none')
    await ok('user:secret:renew', alice, '--qr', 'none') // a second write: .bak holds alice's secret too
    cpSync(state, template, {recursive: true})
    oathTemplate = readFileSync(oath, 'utf8')
    expect(usersIn(oath)).toHaveLength(1)
    const config = await ok('ssh:config')
    sshd = await startSshd({pamConfig: insertPamLine(config.pam.line)})
  }, 120_000)

  beforeEach(() => reset())

  afterEach((ctx) => {
    if (holder && holder.exitCode === null) {
      holder.kill('SIGCONT')
      holder.kill('SIGKILL')
    }
    holder = undefined
    if (ctx.task.result?.state === 'fail' && sshd) console.log(`[emergency] sshd log:\n${sshd.logs().slice(-4000)}`)
  })

  afterAll(async () => {
    try {
      await sshd?.stop()
    } finally {
      removeUser(alice)
      process.off('exit', onExit)
      store.cleanup()
    }
  }, 60_000)

  it('asks for a code when all is well (the starting point of every case)', async () => {
    await expectCodeAsked()
    const doctor = await json('doctor', '--pam-file', join(sshd!.workDir, 'pam.d-sshd'))
    expect(doctor.json.checks.filter((c: any) => c.fix)).toEqual([])
  })

  it('key missing: twofactor:disable turns 2FA off without it, carrying the sealed records byte for byte', async () => {
    const key = sidecars(store.path).key
    const kept = bytes(key)
    rmSync(key)
    const before = bytes(store.path).toString('utf8')
    const doctor = await json('doctor')
    expect(doctor.json.checks.find((c: any) => c.check === 'store')).toMatchObject({status: 'finding', fix: 'tfactl twofactor:disable'})

    const r = await run('twofactor:disable')
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/only the settings were rewritten/)
    const after = bytes(store.path).toString('utf8')
    expect(after.slice(after.indexOf('\n'))).toBe(before.slice(before.indexOf('\n'))) // user lines untouched
    expect(JSON.parse(`${after.split('\n')[0]}}}`).settings.enabled).toBe(false)
    expect(bytes(`${store.path}.bak`).toString('utf8')).toBe(before) // the previous store is the backup
    expect(usersIn(oath)).toEqual([])
    await expectPasswordOnly()
    expect((await json('login:check', alice)).json).toMatchObject({allowed: true, reason: 'twofactor_disabled'})

    // The key back: nothing was lost, 2FA on again asks for alice's code.
    writeFileSync(key, kept, {mode: 0o600})
    expect((await json('store:check')).code).toBe(0)
    await ok('twofactor:enable')
    await expectCodeAsked()
  })

  it('key wrong: --force moves the store aside and writes a valid one with 2FA off; the users file lines are copied first', async () => {
    const key = sidecars(store.path).key
    writeFileSync(key, randomBytes(32), {mode: 0o600})
    const broken = bytes(store.path)
    const r = await json('twofactor:disable', '--force')
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({changed: true, removedLocks: [], unreadable: [alice], settingsFrom: 'store'})
    expect(r.json.warnings.join(' ')).toContain(alice)
    const aside = r.json.movedAside.find((p: string) => /store\.json\.broken-\d{8}T\d{6}Z/.test(p))
    expect(bytes(aside)).toEqual(broken) // moved, not deleted
    expect(r.json.usersFile).toMatchObject({path: oath, changed: true, users: []})
    expect(readFileSync(r.json.usersFile.savedCopy, 'utf8')).toBe(oathTemplate)
    expect((await json('store:check')).code).toBe(0)
    await expectPasswordOnly()
    const audit = readFileSync(sidecars(store.path).audit, 'utf8')
    expect(audit).toContain(aside)
    expect(audit).toContain('"reason":"forced"')
  })

  it('store corrupt: disable says to restore; doctor names store:restore; store:restore puts .bak back, then disable works', async () => {
    writeFileSync(store.path, '{"broken', {mode: 0o600})
    const plain = await json('twofactor:disable')
    expect(plain.code).toBe(3)
    expect(plain.json.error.message).toMatch(/store:restore/)
    const doctor = await json('doctor')
    expect(doctor.json.checks.find((c: any) => c.check === 'store')).toMatchObject({status: 'finding', fix: 'tfactl store:restore'})

    const restored = await json('store:restore')
    expect(restored.code, restored.stderr).toBe(0)
    expect(restored.json).toMatchObject({restored: true, from: `${store.path}.bak`, undecryptable: [], users: 1, enabled: true})
    expect(bytes(restored.json.movedAside[0]).toString()).toBe('{"broken')
    expect(bytes(store.path)).toEqual(bytes(`${store.path}.bak`))
    await ok('twofactor:disable')
    await expectPasswordOnly()
  })

  it('store deleted, side files present: logins, store:check and doctor say so (exit 3 naming .bak); --force rebuilds it from .bak', async () => {
    rmSync(store.path)
    const check = await json('login:check', alice)
    expect(check.code).toBe(3)
    expect(check.json.error.message).toContain(`${store.path}.bak`)
    expect((await json('store:check')).code).toBe(3)
    expect((await json('twofactor:status')).code).toBe(3)
    const doctor = await json('doctor')
    expect(doctor.json.checks.find((c: any) => c.check === 'store')).toMatchObject({status: 'finding', fix: 'tfactl store:restore'})

    const bak = bytes(`${store.path}.bak`)
    const r = await json('twofactor:disable', '--force')
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({settingsFrom: 'backup', unreadable: []})
    expect(bytes(`${store.path}.bak`)).toEqual(bak)
    const list = await ok('user:list')
    expect(list.users.map((u: any) => u.user)).toEqual([alice]) // her secret kept, read from .bak
    await expectPasswordOnly()
  })

  it('.bak corrupt too: store:restore refuses (exit 3); --force starts from defaults, keeps the users file path the torn store still names', async () => {
    const whole = bytes(store.path)
    writeFileSync(store.path, whole.subarray(0, Math.floor(whole.length / 2)), {mode: 0o600}) // a torn store
    writeFileSync(`${store.path}.bak`, '{"broken', {mode: 0o600})
    const restore = await json('store:restore')
    expect(restore.code).toBe(3)
    expect(restore.json.error.message).toMatch(/not a valid store.*twofactor:disable --force/)
    expect(bytes(`${store.path}.bak`).toString()).toBe('{"broken')
    const doctor = await json('doctor')
    expect(doctor.json.checks.find((c: any) => c.check === 'store').fix).toBe('tfactl twofactor:disable --force')

    const r = await json('twofactor:disable', '--force')
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.settingsFrom).toBe('defaults')
    expect(r.json.usersFile.path).toBe(oath)
    expect(bytes(r.json.movedAside[0])).toEqual(whole.subarray(0, Math.floor(whole.length / 2)))
    expect(bytes(`${store.path}.bak`).toString()).toBe('{"broken') // never deleted
    expect((await json('store:check')).code).toBe(0)
    await expectPasswordOnly()
  })

  it('stale pam_oath lock: --force removes it (no process has it open) and says so', async () => {
    writeFileSync(`${oath}.lock`, '', {mode: 0o600}) // left by a pam_oath that crashed
    const doctor = await json('doctor')
    expect(doctor.json.checks.find((c: any) => c.check === 'users file' && c.fix)).toMatchObject({fix: 'tfactl twofactor:disable --force'})
    const r = await json('twofactor:disable', '--force')
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({changed: true, movedAside: [], removedLocks: [`${oath}.lock`], usersFile: {path: oath, changed: true, users: []}})
    expect(existsSync(`${oath}.lock`)).toBe(false)
    expect(readFileSync(sidecars(store.path).audit, 'utf8')).toContain('"outcome":"removed_lock"')
    await expectPasswordOnly()
  })

  it('store lock held by a stopped process: --force names it and exits 3; once it is gone, 2FA goes off', async () => {
    const lock = `${store.path}.lock`
    const script = `import(${JSON.stringify(join(ROOT, 'dist/store/file/lock.js'))}).then((m) => m.withLock(${JSON.stringify(lock)}, () => { process.stdout.write('locked\\n'); return new Promise(() => {}) }))`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {stdio: ['ignore', 'pipe', 'inherit']})
    holder = child
    await new Promise<void>((done) => child.stdout!.on('data', (d) => String(d).includes('locked') && done()))
    child.kill('SIGSTOP')
    const before = bytes(store.path)

    const r = await json('twofactor:disable', '--force')
    expect(r.code).toBe(3)
    expect(r.json.error.message).toContain(`pid ${child.pid}`)
    expect(r.json.error.message).toMatch(/node/)
    expect(bytes(store.path)).toEqual(before)
    const doctor = await json('doctor')
    expect(doctor.json.checks.find((c: any) => c.fix === `kill -CONT ${child.pid}`)).toBeDefined()

    child.kill('SIGCONT')
    child.kill('SIGTERM')
    await new Promise((done) => child.once('exit', done))
    await ok('twofactor:disable')
    await expectPasswordOnly()
  })

  it('STIG on: disable and --force refuse (exit 4); --force --no-stig leaves STIG mode, then turns 2FA off', async () => {
    await ok('user:secret:renew', 'root', '--qr', 'none') // STIG mode needs an administrator with a secret
    await ok('twofactor:enable', '--stig')
    expect((await json('twofactor:disable')).code).toBe(4)
    const refused = await json('twofactor:disable', '--force')
    expect(refused.code).toBe(4)
    expect(refused.json.error.message).toContain('--force --no-stig')
    await expectCodeAsked()

    const r = await json('twofactor:disable', '--force', '--no-stig')
    expect(r.code, r.stderr).toBe(0)
    expect(await ok('twofactor:status')).toMatchObject({enabled: false, stig: false})
    expect(readFileSync(sidecars(store.path).audit, 'utf8')).toContain('"reason":"forced_left_stig"')
    await expectPasswordOnly()
  })

  it('--force is for root only (exit 4), and --no-stig only goes with --force (exit 2)', async () => {
    const nobody = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, BIN, 'twofactor:disable', '--force', '--store', store.path, '--json'], {
      encoding: 'utf8',
    })
    expect(nobody.status, nobody.stdout + nobody.stderr).toBe(4)
    expect(JSON.parse(nobody.stdout).error.message).toMatch(/root/)
    expect((await json('twofactor:disable', '--no-stig')).code).toBe(2)
    expect(files()).not.toContainEqual(expect.stringMatching(/broken/))
  })
})
