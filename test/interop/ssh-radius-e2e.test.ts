// End to end: real OpenSSH asks real pam_radius_auth (Debian's libpam-radius-auth 2.0.0), which
// asks the real `tfactl radius:serve` (challenge mode), which judges with the store; a real SSH
// client (ssh2) answers the keyboard-interactive prompts. sshd runs in `unshare -m` with the PAM
// file built from `tfactl ssh:config --radius` bind-mounted over /etc/pam.d/sshd, so the host's
// files stay untouched. The store is a parameter: the file store (one host), and one
// PostgreSQL shared by two sshd "hosts", each asking its own responder.
import {randomBytes} from 'node:crypto'
import {chmodSync, existsSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {hotp} from '../../src/core/totp.js'
import {type Run, tfactl, tempStore} from '../helpers/cli.js'
import {type PgServer, startPostgres} from '../helpers/postgres.js'
import {ATTR, type Attribute, encodeRequest} from '../../src/radius/packet.js'
import {type Responder, sendRaw, sendRawAsMallory, startResponder, writeClients} from '../helpers/radius.js'
import {
  canRunSshd,
  createUser,
  generateKeyPair,
  insertPamLine,
  installAuthorizedKey,
  randomUserName,
  removeUser,
  type UserLoginOptions,
  userLogin,
  type SshdHandle,
  startSshd,
} from '../helpers/sshd.js'

const PAM_RADIUS = [
  '/lib/x86_64-linux-gnu/security/pam_radius_auth.so',
  '/usr/lib/x86_64-linux-gnu/security/pam_radius_auth.so',
  '/lib/security/pam_radius_auth.so',
]
const reason = canRunSshd() ?? (PAM_RADIUS.some((p) => existsSync(p)) ? null : 'no pam_radius_auth.so (apt-get install libpam-radius-auth)')
if (reason) console.warn(`[ssh-radius-e2e] skipped: ${reason}`)

const CODE_PROMPT = /^2FA code: $/
const WINDOW = 3 // room for the many codes a user needs in a few steps
const nowStep = () => Math.floor(Date.now() / 30_000)

interface Backend {
  name: string
  /** sshd "hosts", each with its own responder on the same store. */
  hosts: number
  /** Creates the store; returns the arguments that name it. */
  open(dir: string): Promise<string[]>
  /** Makes the store unusable (and back). */
  breakStore(): Promise<void> | void
  repairStore(): Promise<void> | void
  close(): Promise<void> | void
}

const fileBackend = (): Backend => {
  let path = ''
  return {
    name: 'file store, one host',
    hosts: 1,
    async open(dir) {
      path = join(dir, 'state', 'store.json')
      return ['--store', path]
    },
    breakStore: () => chmodSync(path, 0o644), // tfactl refuses a store others could read
    repairStore: () => chmodSync(path, 0o600),
    close() {},
  }
}

const postgresBackend = (): Backend => {
  let pg: PgServer | undefined
  return {
    name: 'PostgreSQL, two hosts',
    hosts: 2,
    async open(dir) {
      pg = await startPostgres()
      return ['--store', await pg.database('tfactl'), '--key-file', join(dir, 'key', 'tfactl.key')]
    },
    breakStore: () => pg!.stop(),
    repairStore: () => pg!.start(),
    close: () => pg?.destroy(),
  }
}

const PG_BIN = process.env.TFACTL_PG_BIN ?? '/usr/lib/postgresql/15/bin'
const pgMissing = existsSync(join(PG_BIN, 'initdb')) ? null : `no ${PG_BIN}/initdb (apt-get install postgresql)`
if (!reason && pgMissing) console.warn(`[ssh-radius-e2e] PostgreSQL case skipped: ${pgMissing}`)

describeRadiusSsh(fileBackend(), reason)
describeRadiusSsh(postgresBackend(), reason ?? pgMissing)

function describeRadiusSsh(backend: Backend, skip: string | null) {
  describe.skipIf(skip !== null)(`SSH 2FA end to end: OpenSSH + pam_radius_auth + tfactl radius:serve (${backend.name})`, {timeout: 180_000}, () => {
    const store = tempStore()
    let storeArgs: string[] = []
    const run = (args: string[]): Promise<Run> => tfactl([...args, ...storeArgs])
    const secretText = `s-${randomBytes(6).toString('hex')}`
    const names = {
      alice: randomUserName('tfra'), // secret: password + code, replay
      nora: randomUserName('tfrn'), // no secret
      kim: randomUserName('tfrk'), // secret, logs in with a key
      lee: randomUserName('tfrl'), // secret: lockout, then bypass; recovery codes
    }
    const password = new Map(Object.values(names).map((n) => [n, `P-${randomBytes(8).toString('hex')}`]))
    const keys = new Map<string, Buffer>()
    const lastStep = new Map<string, number>()
    const responders: Responder[] = []
    const hosts: SshdHandle[] = []
    let kimKey: ReturnType<typeof generateKeyPair>
    const created: string[] = []

    const ok = async (...args: string[]): Promise<any> => {
      const r = await run([...args, '--json'])
      expect(r.code, `${args.join(' ')}: ${r.stdout} ${r.stderr}`).toBe(0)
      return r.json
    }
    /** A code of a step after the user's last one, inside the window; waits for the clock if needed. */
    async function freshCode(user: string): Promise<string> {
      for (;;) {
        const step = Math.max((lastStep.get(user) ?? -1) + 1, nowStep() - WINDOW + 1)
        if (step <= nowStep() + WINDOW - 1) {
          lastStep.set(user, step)
          return hotp(keys.get(user)!, step, 6)
        }
        await sleep(1000)
      }
    }
    /** A good code that is not recorded as used (for logins that cannot get as far as using it). */
    const peekCode = (user: string) => hotp(keys.get(user)!, nowStep(), 6)
    const login = (user: string, opts: UserLoginOptions & {host?: number} = {}) => userLogin(hosts[opts.host ?? 0].port, user, password.get(user), opts)
    type Login = Awaited<ReturnType<typeof login>>
    const expectIn = (r: Login, user: string) => {
      expect(r, JSON.stringify(r)).toMatchObject({ok: true, exitCode: 0})
      expect(r.stdout?.trim()).toBe(user)
    }
    const expectCodeIn = (r: Login, user: string) => {
      expectIn(r, user)
      expect(r.prompts).toHaveLength(2)
      expect(r.prompts[0]).toMatch(/assword/)
      expect(r.prompts[1]).toMatch(CODE_PROMPT)
    }
    const expectOut = (r: Login) => {
      expect(r.ok, JSON.stringify(r)).toBe(false)
    }
    const onExit = () => {
      for (const sshd of hosts)
        if (sshd.pid > 1)
          try {
            process.kill(-sshd.pid, 'SIGKILL')
          } catch {
            // gone
          }
      for (const r of responders) r.child.kill('SIGKILL')
      for (const u of created) removeUser(u)
    }

    beforeAll(async () => {
      process.once('exit', onExit)
      storeArgs = await backend.open(store.dir)
      for (const u of Object.values(names)) {
        createUser(u, password.get(u)!)
        created.push(u)
      }
      await ok('twofactor:enable', '--ssh', '--window', String(WINDOW), '--fail-delay', '0', '--max-failures', '2', '--lockout', '600')
      for (const u of [names.alice, names.kim, names.lee]) keys.set(u, base32Decode((await ok('user:secret:renew', u, '--qr', 'none')).users[0].secret)!)
      kimKey = generateKeyPair()
      installAuthorizedKey(names.kim, kimKey.publicKey)

      const clients = writeClients(join(store.dir, 'radius-clients'), ['# the sshd hosts', `127.0.0.1 ${secretText} challenge`])
      for (let h = 0; h < backend.hosts; h++) {
        const responder = await startResponder(['--clients', clients, ...storeArgs, '--verbose'])
        responders.push(responder)
        const conf = join(store.dir, `pam_radius_auth-${h}.conf`)
        const config = await ok(
          'ssh:config',
          '--radius',
          '--radius-server',
          `127.0.0.1:${responder.port}`,
          '--radius-conf',
          conf,
          '--clients',
          clients,
          '--write',
        )
        expect(config.pam.line).toBe(`auth [success=ok default=die] pam_radius_auth.so conf=${conf} skip_passwd prompt_attribute`)
        expect(JSON.stringify(config)).not.toContain(secretText) // the secret went into the file only
        hosts.push(await startSshd({pamConfig: insertPamLine(config.pam.line)}))
      }
    }, 120_000)

    afterAll(async () => {
      try {
        for (const sshd of hosts) await sshd.stop()
        for (const r of responders) expect(await r.stop()).toBe(0)
      } finally {
        for (const u of created) removeUser(u)
        process.off('exit', onExit)
        await backend.close()
        store.cleanup()
      }
    }, 60_000)

    const dump = () => `\n--- responder:\n${responders[0].logs().slice(-3000)}\n--- sshd:\n${hosts[0].logs().slice(-3000)}`

    it('runs sshd with the PAM line from ssh:config --radius, which doctor finds in place', async () => {
      for (const sshd of hosts) {
        const r = await run(['doctor', '--pam-file', join(sshd.workDir, 'pam.d-sshd'), '--sshd-config', join(sshd.workDir, 'sshd_config'), '--json'])
        const status = Object.fromEntries(r.json.checks.map((c: any) => [c.check, c.status]))
        expect(status, JSON.stringify(r.json)).toMatchObject({'users file': 'skipped', 'sshd PAM': 'ok', 'radius servers': 'ok', 'sshd settings': 'ok'})
      }
    })

    it('logs in with password + code; a wrong code and the same code again are refused', async () => {
      const code = await freshCode(names.alice)
      expectCodeIn(await login(names.alice, {code}), names.alice)
      expectOut(await login(names.alice, {code}))
      expectOut(await login(names.alice, {code: '000000'}))
      expectOut(await login(names.alice, {password: 'wrong', code: peekCode(names.alice)})) // the password still counts
    }, 90_000)

    it('a local user without the secret neither locks an enrolled user out nor learns who is enrolled', async () => {
      // the attack: a first request without a password (Challenge or Accept would tell enrolment),
      // then an answer with a State and 16 random octets as the password (would count a failure)
      const attempt = (user: string, second: boolean) => {
        const authenticator = randomBytes(16)
        const attributes: Attribute[] = [{type: ATTR.userName, value: Buffer.from(user)}]
        if (second) attributes.push({type: ATTR.userPassword, value: randomBytes(16)}, {type: ATTR.state, value: randomBytes(37)})
        return encodeRequest({id: authenticator[0], authenticator, attributes, secret: Buffer.from('unknown'), messageAuthenticator: false})
      }
      const sends = [names.alice, names.nora, 'no-such-user'].flatMap((user) =>
        [false, true, true, true].flatMap((second) => [
          sendRawAsMallory(attempt(user, second), responders[0].port, '127.0.0.1', {timeoutMs: 1500}), // her own socket
          sendRaw(attempt(user, second), responders[0].port, '127.0.0.1', 1500), // root's socket, still without the secret
        ]),
      )
      expect((await Promise.all(sends)).every((reply) => reply === 'timeout')).toBe(true)
      expectCodeIn(await login(names.alice, {code: await freshCode(names.alice)}), names.alice) // --max-failures 2: not locked
      expect(responders[0].logs()).not.toMatch(/no-such-user/)
    }, 90_000)

    it('does not prompt a user without a secret for a code', async () => {
      const r = await login(names.nora)
      expectIn(r, names.nora)
      expect(r.prompts).toHaveLength(1)
    })

    it('lets a key login in without a code; the same user by password needs one', async () => {
      const r = await login(names.kim, {privateKey: kimKey.privateKey, password: null})
      expectIn(r, names.kim)
      expect(r.prompts).toEqual([])
      const byPassword = await login(names.kim, {code: ''})
      expectOut(byPassword)
      expect(
        byPassword.prompts.some((p) => CODE_PROMPT.test(p)),
        dump(),
      ).toBe(true)
    })

    it('locks a user out after failed codes; a bypass code lets them in once; recovery codes work once', async () => {
      expectOut(await login(names.lee, {code: '111111'}))
      expectOut(await login(names.lee, {code: '222222'}))
      expectOut(await login(names.lee, {code: peekCode(names.lee)})) // locked out: even a good code
      const audit = (await ok('audit', '--user', names.lee)).events.filter((e: any) => e.command === 'radius:serve')
      expect(audit.map((e: any) => e.reason)).toContain('locked_out')
      const bypass = (await ok('user:bypass', names.lee)).code as string
      expectCodeIn(await login(names.lee, {code: bypass}), names.lee)
      expectOut(await login(names.lee, {code: bypass}))
      const recovery = (await ok('user:recovery:generate', names.lee, '--count', '1')).codes[0] as string
      expectCodeIn(await login(names.lee, {code: recovery}), names.lee)
      expectOut(await login(names.lee, {code: recovery}))
    }, 90_000)

    it('refuses password + code logins while the store cannot be used; key logins pass; recovers by itself', async () => {
      await backend.breakStore()
      try {
        for (let h = 0; h < backend.hosts; h++) {
          expectOut(await login(names.alice, {code: peekCode(names.alice), host: h}))
          expectOut(await login(names.nora, {host: h})) // fails closed: not even "no secret" is known
          expectIn(await login(names.kim, {privateKey: kimKey.privateKey, password: null, host: h}), names.kim)
          expect(responders[h].logs()).toMatch(/store_unavailable/)
        }
      } finally {
        await backend.repairStore()
      }
      for (let h = 0; h < backend.hosts; h++) expectCodeIn(await login(names.alice, {code: await freshCode(names.alice), host: h}), names.alice)
    }, 120_000)

    it.skipIf(backend.hosts < 2)(
      'refuses on host B a code used on host A',
      async () => {
        const code = await freshCode(names.alice)
        expectCodeIn(await login(names.alice, {code, host: 0}), names.alice)
        expectOut(await login(names.alice, {code, host: 1}))
        expectCodeIn(await login(names.alice, {code: await freshCode(names.alice), host: 1}), names.alice)
        const audit = (await ok('audit', '--user', names.alice)).events.filter((e: any) => e.command === 'radius:serve')
        expect(audit.map((e: any) => e.reason)).toContain('code_replayed')
        expect(audit.every((e: any) => e.client === '127.0.0.1')).toBe(true)
      },
      90_000,
    )
  })
}
