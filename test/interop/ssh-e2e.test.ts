// End to end: tfactl writes the pam_oath users file, real OpenSSH asks for codes through real
// pam_oath (Debian's libpam-oath), and a real SSH client (ssh2) logs in. sshd runs on
// 127.0.0.1 inside `unshare -m` with a PAM file built from `tfactl ssh:config` bind-mounted over
// /etc/pam.d/sshd, so the host's files stay untouched. Needs root, sshd and pam_oath; skipped
// with the reason printed anywhere else.
import {createHash, randomBytes} from 'node:crypto'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {type Run, tempStore} from '../helpers/cli.js'
import {
  buildSlowOath,
  canRunSshd,
  createUser,
  generateKeyPair,
  HOST_PAM_SSHD,
  insertPamLine,
  installAuthorizedKey,
  oathtoolTotp,
  randomUserName,
  removeUser,
  type SlowOath,
  type UserLoginOptions,
  userLogin,
  type SshdHandle,
  startSshd,
} from '../helpers/sshd.js'
import {check, expectDecision} from '../cli/support.js'

const reason = canRunSshd()
if (reason) console.warn(`[ssh-e2e] skipped: ${reason}`)

const WINDOW = 3
const OATH_PROMPT = /One-time password \(OATH\)/
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex')
const nowStep = () => Math.floor(Date.now() / 30_000)

describe.skipIf(reason !== null)('SSH 2FA end to end: tfactl + pam_oath + OpenSSH', {timeout: 180_000}, () => {
  const store = tempStore()
  const oath = join(store.dir, 'users.oath')
  const hostPamSum = reason ? '' : sha256(HOST_PAM_SSHD)
  const names = {
    alice: randomUserName('tfea'), // secret: codes, replay, disable, shared replay state
    nora: randomUserName('tfen'), // no secret
    kim: randomUserName('tfek'), // secret, logs in with a key
    uma: randomUserName('tfeu'), // secret, then unset
    ray: randomUserName('tfer'), // logs in again and again during the race tests
    bea: randomUserName('tfeb'), // renewed again and again during the race tests
  }
  const password = new Map(Object.values(names).map((n) => [n, `P-${randomBytes(8).toString('hex')}`]))
  const secrets = new Map<string, string>() // user → base32 secret
  /** The newest step whose code each user has used (anywhere). */
  const lastStep = new Map<string, number>()
  let sshd: SshdHandle | undefined
  let slow: SlowOath | string = 'not built'
  let kimKey: ReturnType<typeof generateKeyPair>
  let created: string[] = []

  const tfactl = async (...args: string[]): Promise<Run> => store.run(args)
  const ok = async (...args: string[]): Promise<any> => {
    const r = await store.run([...args, '--json'])
    expect(r.code, `${args.join(' ')}: ${r.stdout} ${r.stderr}`).toBe(0)
    return r.json
  }
  const renew = async (user: string): Promise<string> => {
    const r = await ok('user:secret:renew', user, '--qr', 'none')
    secrets.set(user, r.users[0].secret)
    lastStep.delete(user)
    return r.users[0].secret
  }
  const hexOf = (user: string) => base32Decode(secrets.get(user)!)!.toString('hex')
  const codeAt = (user: string, step: number) => oathtoolTotp(hexOf(user), {at: step * 30 + 1})
  const fields = (user: string) =>
    readFileSync(oath, 'utf8')
      .split('\n')
      .map((l) => l.split('\t'))
      .find((f) => f[1] === user)

  /** A code of a step after the user's last one, inside the window; waits for the clock if needed. */
  async function freshCode(user: string): Promise<{step: number; code: string}> {
    let step = Math.max((lastStep.get(user) ?? -1) + 1, nowStep() - (WINDOW - 1))
    while (step > nowStep() + WINDOW) await sleep(1000)
    step = Math.max(step, nowStep() - (WINDOW - 1))
    return {step, code: codeAt(user, step)}
  }
  const used = (user: string, step: number) => lastStep.set(user, Math.max(lastStep.get(user) ?? -1, step))

  const login = (user: string, opts: UserLoginOptions = {}) => userLogin(sshd!.port, user, password.get(user), opts)
  const expectIn = (r: Awaited<ReturnType<typeof login>>, user: string) => {
    expect(r, JSON.stringify(r)).toMatchObject({ok: true, exitCode: 0})
    expect(r.stdout?.trim()).toBe(user)
  }
  const expectPasswordOnly = (r: Awaited<ReturnType<typeof login>>, user: string) => {
    expectIn(r, user)
    expect(r.prompts).toHaveLength(1)
    expect(r.prompts[0]).toMatch(/assword/)
  }
  const expectOut = (r: Awaited<ReturnType<typeof login>>) => {
    expect(r.ok, JSON.stringify(r)).toBe(false)
    expect(r.prompts.some((p) => OATH_PROMPT.test(p))).toBe(true)
  }

  function cleanupSync() {
    for (const u of created) removeUser(u)
    created = []
  }
  /** If the test process exits without afterAll (killed, crashed), sshd and the users still go. */
  const onExit = () => {
    if (sshd && sshd.pid > 1) {
      try {
        process.kill(-sshd.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    cleanupSync()
  }

  beforeAll(async () => {
    process.once('exit', onExit)
    for (const u of Object.values(names)) {
      createUser(u, password.get(u)!)
      created.push(u)
    }
    await ok('twofactor:enable', '--ssh', '--window', String(WINDOW), '--fail-delay', '0', '--oath-file', oath)
    for (const u of [names.alice, names.kim, names.uma, names.ray, names.bea]) await renew(u)
    kimKey = generateKeyPair()
    installAuthorizedKey(names.kim, kimKey.publicKey)
    const config = await ok('ssh:config')
    expect(config.pam.line).toBe(`auth [success=ok user_unknown=ignore default=die] pam_oath.so usersfile=${oath} window=${WINDOW}`)
    slow = buildSlowOath(store.dir)
    if (typeof slow === 'string') console.warn(`[ssh-e2e] deterministic race tests skipped: ${slow}`)
    sshd = await startSshd({pamConfig: insertPamLine(config.pam.line), env: typeof slow === 'string' ? {} : slow.env})
  }, 120_000)

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') {
      if (sshd) console.log(`[ssh-e2e] sshd log:\n${sshd.logs().slice(-6000)}`)
      if (existsSync(oath)) console.log(`[ssh-e2e] users file:\n${readFileSync(oath, 'utf8')}`)
    }
  })

  afterAll(async () => {
    try {
      await sshd?.stop()
    } finally {
      cleanupSync()
      process.off('exit', onExit)
      store.cleanup()
    }
    expect(sha256(HOST_PAM_SSHD)).toBe(hostPamSum)
  }, 60_000)

  it('runs sshd with the PAM line from ssh:config, which doctor finds in place', async () => {
    expect(readFileSync(join(sshd!.workDir, 'pam.d-sshd'), 'utf8')).toContain(`pam_oath.so usersfile=${oath} window=${WINDOW}`)
    const r = await tfactl('doctor', '--pam-file', join(sshd!.workDir, 'pam.d-sshd'), '--sshd-config', join(sshd!.workDir, 'sshd_config'), '--json')
    const status = Object.fromEntries(r.json.checks.map((c: any) => [c.check, c.status]))
    expect(status).toMatchObject({'users file': 'ok', 'sshd PAM': 'ok', 'sshd settings': 'ok'})
  })

  it('(1) logs in a user with a secret with password + code; a wrong code and the same code again are denied', async () => {
    const {step, code} = await freshCode(names.alice)
    const r = await login(names.alice, {code})
    expectIn(r, names.alice)
    expect(r.prompts).toHaveLength(2)
    expect(r.prompts[1]).toMatch(OATH_PROMPT)
    used(names.alice, step)
    expect(fields(names.alice)![3]).toBe(hexOf(names.alice))
    expect(fields(names.alice)![5]).toBe(code) // pam_oath recorded it

    expectOut(await login(names.alice, {code: codeAt(names.alice, step + 40)}))
    expectOut(await login(names.alice, {code}))
  })

  it('(2) logs in a user without a secret with the password alone', async () => {
    expectPasswordOnly(await login(names.nora), names.nora)
  })

  it('(3) logs in a user with a secret by key without a code', async () => {
    const r = await login(names.kim, {privateKey: kimKey.privateKey, password: null})
    expectIn(r, names.kim)
    expect(r.prompts).toEqual([])
    expect(r.methods).toEqual(['publickey'])
    expectOut(await login(names.kim)) // by password, the same user needs a code
  })

  it('(4) lets the password alone in after twofactor:disable or --no-ssh, and restores replay state after', async () => {
    const last = lastStep.get(names.alice)!
    await ok('twofactor:disable')
    expectPasswordOnly(await login(names.alice), names.alice)
    await ok('twofactor:enable')
    expectOut(await login(names.alice)) // codes again
    // The code used in (1) was recorded by pam_oath; the line was dropped and rebuilt from the store.
    expect(fields(names.alice)![5]).toBe(codeAt(names.alice, last))
    expectOut(await login(names.alice, {code: codeAt(names.alice, last)}))

    await ok('twofactor:enable', '--no-ssh')
    expectPasswordOnly(await login(names.alice), names.alice)
    await ok('twofactor:enable', '--ssh')
    expectOut(await login(names.alice))
  })

  it('(5) lets the password alone in after user:secret:unset', async () => {
    expectOut(await login(names.uma))
    await ok('user:secret:unset', names.uma, '--yes')
    expect(fields(names.uma)).toBeUndefined()
    expectPasswordOnly(await login(names.uma), names.uma)
  })

  it('(6) shares one replay state: a code used over SSH is refused by login:check, and the other way round', async () => {
    const alice = names.alice
    while (nowStep() <= lastStep.get(alice)!) await sleep(1000) // so that base+3 is inside the window
    const base = nowStep()
    const overSsh = codeAt(alice, base)
    expectIn(await login(alice, {code: overSsh}), alice)
    used(alice, base)
    expectDecision(await check(store, alice, {service: 'ssh', code: overSsh}), false, 'code_replayed')
    expectDecision(await check(store, alice, {service: 'ssh', code: codeAt(alice, base - 1)}), false, 'code_replayed') // earlier step

    const viaCheck = codeAt(alice, base + 2)
    expectDecision(await check(store, alice, {service: 'ssh', code: viaCheck}), true, 'code_accepted')
    used(alice, base + 2)
    expect(fields(alice)![5]).toBe(viaCheck)
    expectOut(await login(alice, {code: viaCheck}))
    expectOut(await login(alice, {code: codeAt(alice, base + 1)})) // unused, but of an earlier step
    expectIn(await login(alice, {code: codeAt(alice, base + 3)}), alice)
    used(alice, base + 3)
  })

  it("loses neither side's update when syncs race with real logins", async () => {
    const {ray, bea} = names
    let running = true
    const problems: string[] = []
    const logins: Array<{step: number; code: string; ok: boolean}> = []
    let renewals = 0
    let syncs = 0

    // A login whose pam_oath meets a tfactl write (the `.lock` exists) is refused by design (the
    // user retries), and here four writers run without pause: so try until four went through.
    const loginLoop = async () => {
      for (let i = 0; i < 40 && logins.filter((l) => l.ok).length < 4; i++) {
        const {step, code} = await freshCode(ray)
        const r = await login(ray, {code})
        logins.push({step, code, ok: r.ok})
        if (!r.ok) continue
        used(ray, step)
        const f = fields(ray)
        if (f?.[5] !== code) problems.push(`after login ${i}: ray's recorded code is ${f?.[5]}, not ${code}`)
      }
    }
    // bea, and two store-only users (the file needs no Unix account), each renewed in a loop.
    const renewed = [bea, `${bea}x1`, `${bea}x2`]
    const renewLoop = async (user: string) => {
      while (running) {
        const secret = await renew(user)
        renewals++
        const f = fields(user)
        if (f?.[3] !== hexOf(user)) problems.push(`after a renewal: ${user}'s line has ${f?.[3]}, not the new secret ${secret}`)
      }
    }
    const syncLoop = async () => {
      while (running) {
        const r = await tfactl('ssh:sync', '--json')
        if (r.code !== 0) problems.push(`ssh:sync exited ${r.code}: ${r.stderr}`)
        syncs++
      }
    }
    const done = loginLoop().finally(() => (running = false))
    await Promise.all([done, ...renewed.map(renewLoop), syncLoop()])
    console.log(`[ssh-e2e] race: ${logins.filter((l) => l.ok).length}/${logins.length} logins, ${renewals} renewals, ${syncs} syncs`)
    expect(problems).toEqual([])
    expect(logins.filter((l) => l.ok).length).toBeGreaterThanOrEqual(3)

    // Afterwards: bea's newest secret is in the file, ray's last login is recorded, and every
    // code ray used is refused, by login:check and by sshd.
    for (const user of renewed) expect(fields(user)![3]).toBe(hexOf(user))
    const accepted = logins.filter((l) => l.ok)
    expect(fields(ray)![5]).toBe(accepted.at(-1)!.code)
    for (const l of accepted) {
      const r = await check(store, ray, {service: 'ssh', code: l.code})
      expect(r.json.allowed, `${l.step}: ${r.stdout}`).toBe(false)
    }
    expectOut(await login(ray, {code: accepted.at(-1)!.code}))
    expect((await tfactl('ssh:sync', '--check')).code).toBe(0)
    expect(readdirSync(store.dir).filter((n) => /^users\.oath\./.test(n))).toEqual([])
  })

  describe('deterministic races (pam_oath paused by an LD_PRELOAD shim)', () => {
    const runningUntil = (p: Promise<unknown>) => {
      let settled = false
      void p.finally(() => (settled = true))
      return () => settled
    }

    it('a sync while a login has read the old file but not yet locked: the stale copy never wins', async (ctx) => {
      if (typeof slow === 'string') return ctx.skip()
      const {ray, bea} = names
      const oldBea = hexOf(bea)
      const before = fields(ray)!.join('\t')
      const {step, code} = await freshCode(ray)
      slow.arm('lock')
      const loginDone = login(ray, {code})
      await slow.reached('lock') // pam_oath read the file and accepted the code, unlocked

      const renewal = renew(bea)
      const renewed = runningUntil(renewal)
      while (fields(bea)![3] === oldBea) await sleep(20) // our file is in place…
      await sleep(300)
      expect(renewed()).toBe(false) // …and tfactl holds the lock while pam_oath has the old copy open
      slow.release('lock')
      await renewal
      const r = await loginDone

      // pam_oath found the lock taken and failed: the login is refused, nothing is recorded,
      // and our update stays. Without waiting, its stale copy would have put bea's old secret back.
      expect(r.ok, JSON.stringify(r)).toBe(false)
      expect(fields(bea)![3]).toBe(hexOf(bea))
      expect(fields(ray)!.join('\t')).toBe(before)
      expect(existsSync(`${oath}.lock`) || existsSync(`${oath}.new`)).toBe(false)

      // The code was never used, so it still works, once.
      expectIn(await login(ray, {code}), ray)
      used(ray, step)
      expect(fields(ray)![5]).toBe(code)
      expect(fields(bea)![3]).toBe(hexOf(bea))
    })

    it("a sync while a login holds the lock: it waits, and keeps the login's record", async (ctx) => {
      if (typeof slow === 'string') return ctx.skip()
      const {ray, bea} = names
      const {step, code} = await freshCode(ray)
      slow.arm('new')
      const loginDone = login(ray, {code})
      await slow.reached('new') // pam_oath holds <file>.lock

      const renewal = renew(bea)
      const renewed = runningUntil(renewal)
      await sleep(1500)
      expect(renewed()).toBe(false) // waiting for the lock
      expect(existsSync(`${oath}.lock`)).toBe(true)
      slow.release('new')
      const r = await loginDone
      await renewal

      expectIn(r, ray)
      used(ray, step)
      expect(fields(ray)![5]).toBe(code) // the login's update…
      expect(fields(bea)![3]).toBe(hexOf(bea)) // …and ours
      expectDecision(await check(store, ray, {service: 'ssh', code}), false, 'code_replayed')
      expect((await tfactl('ssh:sync', '--check')).code).toBe(0)
    })
  })
})
