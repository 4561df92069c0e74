// The real `tfactl radius:serve` against those it must not trust: a sender without the shared
// secret (raw datagrams built here, with random octets where the hidden password goes), a local
// unprivileged user (test/helpers/mallory.ts) on IPv4, IPv6 and IPv4-mapped IPv6, a VPN client
// asking for users who have no secret, and clients files another user could change.
import {randomBytes} from 'node:crypto'
import {chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import {networkInterfaces} from 'node:os'
import {dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {hotp, timeStep} from '../../src/core/totp.js'
import {installedPamRadius} from '../../src/radius/pam.js'
import {ATTR, type Attribute, checkResponse, CODE, encodeRequest, hidePassword, text} from '../../src/radius/packet.js'
import {tempStore} from '../helpers/cli.js'
import {mallory} from '../helpers/mallory.js'
import {radiusRequest, type Responder, sendRaw, sendRawAsMallory, startResponder, writeClients} from '../helpers/radius.js'

const SECRET = `hostile-${randomBytes(8).toString('hex')}`
/** This host's own addresses other than loopback (a local user can send from them too). */
const OWN = Object.values(networkInterfaces())
  .flatMap((list) => list ?? [])
  .filter((i) => !i.internal && !i.address.startsWith('fe80:'))
  .map((i) => i.address)
  .filter((address, index, all) => all.findIndex((a) => a.includes(':') === address.includes(':')) === index) // one IPv4, one IPv6

/** An Access-Request as someone builds it who may or may not know the secret. */
function request(opts: {user: string; password?: Buffer | string; state?: Buffer; secret?: string; signed?: boolean}) {
  const authenticator = randomBytes(16)
  const secret = Buffer.from(opts.secret ?? SECRET)
  const attributes: Attribute[] = [{type: ATTR.userName, value: text(opts.user)}]
  if (typeof opts.password === 'string') attributes.push({type: ATTR.userPassword, value: hidePassword(opts.password, secret, authenticator)})
  else if (opts.password) attributes.push({type: ATTR.userPassword, value: opts.password}) // octets as they are: no secret needed
  if (opts.state) attributes.push({type: ATTR.state, value: opts.state})
  const datagram = encodeRequest({id: authenticator[0], authenticator, attributes, secret, messageAuthenticator: opts.signed ?? false})
  return {datagram, authenticator}
}

const answerCode = (reply: Buffer | 'timeout', authenticator: Buffer) =>
  reply === 'timeout' ? reply : checkResponse(reply, authenticator, Buffer.from(SECRET)).code

describe('radius:serve trusts only what proved the shared secret', {timeout: 180_000}, () => {
  const store = tempStore()
  let challenge: Responder // 127.0.0.1, challenge mode (sshd's pam_radius_auth)
  let dual: Responder // [::], code mode, for 127.0.0.1 and ::1
  let lenient: Responder // 127.0.0.1, code mode with allow-no-secret
  const keys = new Map<string, Buffer>()
  const lastStep = new Map<string, number>()
  const audit = () => {
    try {
      return readFileSync(`${store.path}.audit.log`, 'utf8')
    } catch {
      return ''
    }
  }
  /** A code of a step after the user's last one (the replay rule), waiting for the clock if needed. */
  async function freshCode(user: string): Promise<string> {
    for (;;) {
      const now = timeStep(Date.now(), 30)
      const step = Math.max((lastStep.get(user) ?? -1) + 1, now - 2)
      if (step <= now + 2) {
        lastStep.set(user, step)
        return hotp(keys.get(user)!, step, 6)
      }
      await sleep(1000)
    }
  }
  const locked = async (user: string): Promise<boolean> =>
    Boolean((await store.run(['user:list', '--json'])).json.users.find((u: {user: string}) => u.user === user)?.lockedOut)
  /** The store and the audit trail, to show that nothing changed. */
  const snapshot = () => ({store: store.bytes()?.toString('hex'), audit: audit()})
  /** Waits until the responders have written what they decided (they write after answering). */
  const settled = async () => {
    let last = ''
    for (let i = 0; i < 40; i++) {
      await sleep(50)
      const now = audit()
      if (now === last && i > 4) return
      last = now
    }
  }

  beforeAll(async () => {
    mallory()
    expect((await store.run(['twofactor:enable', '--ssh', '--fail-delay', '0', '--window', '3', '--max-failures', '1'])).code).toBe(0)
    for (const user of ['alice', 'bob', 'carol']) {
      const r = await store.run(['user:secret:renew', user, '--qr', 'none', '--json'])
      keys.set(user, base32Decode(r.json.users[0].secret)!)
    }
    const clients = (name: string, lines: string[]) => writeClients(join(store.dir, name), lines)
    challenge = await startResponder(['--clients', clients('challenge', [`127.0.0.1 ${SECRET} challenge`]), '--store', store.path])
    const dualLines = ['127.0.0.1', '::1', ...OWN].map((address) => `${address} ${SECRET} code`)
    dual = await startResponder(['--clients', clients('dual', dualLines), '--store', store.path], {}, '[::]:0')
    lenient = await startResponder(['--clients', clients('lenient', [`127.0.0.1 ${SECRET} code allow-no-secret`]), '--store', store.path])
  })
  afterAll(async () => {
    await challenge?.stop()
    await dual?.stop()
    await lenient?.stop()
    store.cleanup()
  })

  it('a first request without the secret gets no answer, enrolled or not, and changes nothing', async () => {
    await settled()
    const before = snapshot()
    const users = ['alice', 'nora', 'no-such-user', 'root']
    const tries = users.flatMap((user) => [
      request({user}), // no password at all
      request({user, password: randomBytes(16)}), // 16 random octets
      request({user, password: randomBytes(32)}),
      request({user, password: 'unix-password', secret: 'a-guess'}), // hidden under another secret
    ])
    const replies = await Promise.all(tries.map((t) => sendRaw(t.datagram, challenge.port, '127.0.0.1', 800)))
    expect(replies.every((r) => r === 'timeout')).toBe(true)
    await settled()
    expect(snapshot()).toEqual(before)
    expect(challenge.logs()).toMatch(/dropped: from 127\.0\.0\.1: .*so it proves no shared secret/)
  })

  it('an answer to a challenge without the secret neither takes the State nor counts a failure', async () => {
    const first = await radiusRequest({port: challenge.port, secret: SECRET, user: 'alice', password: 'unix-password', messageAuthenticator: false})
    expect(first).toMatchObject({kind: 'challenge'})
    const state = (first as {state: Buffer}).state
    await settled()
    const before = snapshot()
    const tries = [
      request({user: 'alice', password: randomBytes(16), state}),
      request({user: 'alice', state}),
      request({user: 'alice', password: '000000', state, secret: 'a-guess'}),
    ]
    for (const t of tries) expect(await sendRaw(t.datagram, challenge.port, '127.0.0.1', 800)).toBe('timeout')
    await settled()
    expect(snapshot()).toEqual(before)
    expect(await locked('alice')).toBe(false) // one failure would lock (--max-failures 1)
    // the State is still good: the client that holds the secret answers with it
    const code = await freshCode('alice')
    expect(await radiusRequest({port: challenge.port, secret: SECRET, user: 'alice', password: code, state, messageAuthenticator: false})).toMatchObject({
      kind: 'accept',
    })
  })

  it('a code without the secret counts nothing in code mode', async () => {
    await settled()
    const before = snapshot()
    const tries = ['bob', 'nora', 'no-such-user'].flatMap((user) => [request({user, password: randomBytes(16)}), request({user})])
    const replies = await Promise.all(tries.map((t) => sendRaw(t.datagram, dual.port, '127.0.0.1', 800)))
    expect(replies.every((r) => r === 'timeout')).toBe(true)
    await settled()
    expect(snapshot()).toEqual(before)
    expect(await locked('bob')).toBe(false)
    // with the secret, a code must look like one: a password of another shape is not a code
    expect(await sendRaw(request({user: 'bob', password: 'pass word!'}).datagram, dual.port, '127.0.0.1', 800)).toBe('timeout')
    expect(await locked('bob')).toBe(false)
  })

  it("a local user's socket is never served, even with the secret: IPv4, IPv6, IPv4-mapped and the host's own addresses", async () => {
    await settled()
    const before = snapshot()
    // correctly hidden (she has the secret here), a wrong code: it would lock bob out if it counted
    const cases: [string, number, string, 'udp4' | 'udp6'][] = [
      ['challenge responder, 127.0.0.1', challenge.port, '127.0.0.1', 'udp4'],
      ['[::] responder, 127.0.0.1 (seen as ::ffff:127.0.0.1)', dual.port, '127.0.0.1', 'udp4'],
      ['[::] responder, ::1', dual.port, '::1', 'udp6'],
      ['[::] responder, ::ffff:127.0.0.1 from an IPv6 socket', dual.port, '::ffff:127.0.0.1', 'udp6'],
      ...OWN.map((address): [string, number, string, 'udp4' | 'udp6'] => [
        `[::] responder, ${address}`,
        dual.port,
        address,
        address.includes(':') ? 'udp6' : 'udp4',
      ]),
    ]
    const sent = cases.flatMap(([name, port, host, family]) =>
      [request({user: 'bob', password: '000000', signed: true}), request({user: 'nora', password: 'x'})].map(async (t) => ({
        name,
        reply: await sendRawAsMallory(t.datagram, port, host, {family, timeoutMs: 1500}),
      })),
    )
    for (const {name, reply} of await Promise.all(sent)) expect(reply, name).toBe('timeout')
    await settled()
    expect(snapshot()).toEqual(before)
    expect(await locked('bob')).toBe(false)
    expect(dual.logs()).toMatch(/dropped: from (::ffff:)?127\.0\.0\.1 port \d+: a local socket that is not root's/)
    // the same requests from root's sockets are answered, over each address
    for (const host of ['127.0.0.1', '::1', '::ffff:127.0.0.1', ...OWN]) {
      const t = request({user: 'bob', password: '000000', signed: true})
      expect(answerCode(await sendRaw(t.datagram, dual.port, host), t.authenticator), host).toBe(CODE.accessReject)
      expect(await locked('bob'), host).toBe(true) // counted, as it should be: root's socket, the secret
      expect((await store.run(['user:unlock', 'bob'])).code).toBe(0)
    }
  })

  it("a local user's Status-Server gets no answer even signed with the secret; root's is answered", async () => {
    const probe = () => {
      const authenticator = randomBytes(16)
      return {
        authenticator,
        datagram: encodeRequest({id: authenticator[0], authenticator, attributes: [], secret: Buffer.from(SECRET), code: CODE.statusServer}),
      }
    }
    for (const [port, host] of [
      [challenge.port, '127.0.0.1'],
      [dual.port, '::1'],
    ] as const) {
      expect(await sendRawAsMallory(probe().datagram, port, host, {timeoutMs: 1500}), host).toBe('timeout')
      const t = probe()
      expect(answerCode(await sendRaw(t.datagram, port, host), t.authenticator), host).toBe(CODE.accessAccept)
    }
  })

  it('a code client refuses users without a secret; allow-no-secret lets them in; the SSH switch opens no VPN', async () => {
    const ask = (port: number, user: string, password: string) => radiusRequest({port, secret: SECRET, user, password, messageAuthenticator: false})
    const kinds = async (port: number, user: string, password: string) => ((await ask(port, user, password)) as {kind: string}).kind
    expect(await kinds(dual.port, 'nora', '123456')).toBe('reject')
    expect(await kinds(dual.port, 'made-up-name', '')).toBe('reject')
    expect(await kinds(lenient.port, 'nora', '')).toBe('accept')
    expect(await kinds(challenge.port, 'nora', 'unix-password')).toBe('accept') // SSH: the password was checked by PAM
    expect((await store.run(['twofactor:enable', '--no-ssh'])).code).toBe(0)
    try {
      expect(await kinds(dual.port, 'nora', '123456')).toBe('reject')
      expect(await kinds(dual.port, 'carol', await freshCode('carol'))).toBe('accept') // codes are still checked
      expect(await kinds(lenient.port, 'carol', '')).toBe('reject') // a user with a secret still needs a code
      expect(await kinds(challenge.port, 'carol', 'unix-password')).toBe('accept') // SSH 2FA is off: SSH lets her in
    } finally {
      expect((await store.run(['twofactor:enable', '--ssh'])).code).toBe(0)
    }
    expect((await store.run(['twofactor:disable'])).code).toBe(0)
    try {
      expect(await kinds(dual.port, 'carol', 'anything')).toBe('reject') // 2FA off: a code client has nothing to check
      expect(await kinds(lenient.port, 'carol', 'anything')).toBe('accept')
    } finally {
      expect((await store.run(['twofactor:enable', '--ssh'])).code).toBe(0)
    }
    await settled()
    expect(audit()).toMatch(/"user":"nora","outcome":"denied","reason":"no_secret","client":"(::ffff:)?127\.0\.0\.1"/)
  })
})

describe('radius:serve judges its clients file like the key file', () => {
  const store = tempStore()
  afterAll(() => store.cleanup())

  it('refuses a file another user owns, or one in a directory another user could change, naming what to do', async () => {
    const {uid} = mallory()
    const mine = join(store.dir, 'mine')
    mkdirSync(mine, {mode: 0o700})
    const owned = writeClients(join(mine, 'clients'), [`127.0.0.1 ${SECRET} challenge`])
    chownSync(owned, uid, -1) // mode 600, hers
    let r = await store.run(['radius:serve', '--clients', owned])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`tfactl: ${owned}: belongs to uid ${uid}, not to you (uid 0) or root, who could change who may ask: run chown 0 ${owned}\n`)
    r = await store.run(['ssh:config', '--radius', '--clients', owned])
    expect(r.code).toBe(2)

    const hers = join(store.dir, 'hers')
    mkdirSync(hers, {mode: 0o700})
    chownSync(hers, uid, -1)
    const inHers = writeClients(join(hers, 'clients'), [`127.0.0.1 ${SECRET} challenge`]) // root's file, her directory
    r = await store.run(['radius:serve', '--clients', inHers])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${inHers}: the clients file's directory ${hers} belongs to uid ${uid}`)

    const below = join(hers, 'deeper')
    mkdirSync(below, {mode: 0o700}) // root's, inside hers: she could rename it away
    const deep = writeClients(join(below, 'clients'), [`127.0.0.1 ${SECRET} challenge`])
    r = await store.run(['radius:serve', '--clients', deep])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`is inside ${hers}, which belongs to uid ${uid}`)

    const open = writeClients(join(mine, 'open'), [`127.0.0.1 ${SECRET} challenge`])
    chmodSync(open, 0o640)
    r = await store.run(['radius:serve', '--clients', open])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('can be read or written by group or others (mode 640)')
  })

  it('ssh:config --radius --clients prints no secret unless --show-secret; --write writes the server file 0600, replacing a link', async () => {
    const path = writeClients(join(store.dir, 'cfg-clients'), [`127.0.0.1 ${SECRET} challenge`])
    const conf = join(store.dir, 'conf-dir', 'pam_radius_auth.conf')
    const base = ['ssh:config', '--radius', '--clients', path, '--radius-conf', conf, '--radius-server', '127.0.0.1:1812', '--radius-server', '[::1]:1812']
    let r = await store.run(base)
    expect(r.code).toBe(0)
    expect(r.stdout).not.toContain(SECRET)
    expect(r.stdout).toMatch(/^127\.0\.0\.1:1812\tSHARED-SECRET\t\d+$/m)
    expect(existsSync(conf)).toBe(false) // printing writes nothing
    r = await store.run([...base, '--json'])
    expect(JSON.stringify(r.json)).not.toContain(SECRET)
    expect(r.json.serverFile.written).toBe(false)
    r = await store.run([...base, '--show-secret', '--json'])
    expect(r.json.serverFile.lines[1]).toMatch(new RegExp(`^\\[::1\\]:1812\\t${SECRET}\\t\\d+$`))
    mkdirSync(dirname(conf), {mode: 0o700})
    const target = join(store.dir, 'elsewhere')
    writeFileSync(target, 'untouched\n')
    symlinkSync(target, conf) // a planted link: replaced, never written through
    r = await store.run([...base, '--write'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).not.toContain(SECRET)
    expect(readFileSync(target, 'utf8')).toBe('untouched\n')
    const st = lstatSync(conf)
    expect(st.isFile()).toBe(true)
    expect(st.mode & 0o777).toBe(0o600)
    expect(readFileSync(conf, 'utf8')).toMatch(new RegExp(`^127\\.0\\.0\\.1:1812\\t${SECRET}\\t\\d+\\n\\[::1\\]:1812\\t${SECRET}\\t\\d+\\n$`))
    r = await store.run(['ssh:config', '--radius', '--write'])
    expect(r.code).toBe(2) // --write needs --clients: there is no secret to write otherwise
  })

  it('keeps the previous clients when SIGHUP finds the file given to another user', async () => {
    const {uid} = mallory()
    const path = writeClients(join(store.dir, 'hup'), [`127.0.0.1 ${SECRET} challenge`])
    const responder = await startResponder(['--clients', path, '--store', store.path])
    try {
      chownSync(path, uid, -1)
      responder.child.kill('SIGHUP')
      for (let i = 0; i < 100 && !/SIGHUP: kept/.test(responder.logs()); i++) await sleep(50)
      expect(responder.logs()).toContain(`SIGHUP: kept the previous clients: ${path}: belongs to uid ${uid}`)
      expect(await radiusRequest({port: responder.port, secret: SECRET, user: 'nora', password: 'pw'})).toMatchObject({kind: 'accept'})
    } finally {
      await responder.stop()
    }
  })

  it.skipIf(installedPamRadius()?.requireMa)(
    `ssh:config --radius with Debian 12's pam_radius_auth 2.0: no require_message_authenticator; require-ma on the line is called out`,
    async () => {
      const path = writeClients(join(store.dir, 'ssh'), [`127.0.0.1 ${SECRET} challenge require-ma`])
      const r = await store.run(['ssh:config', '--radius', '--clients', path, '--json'])
      expect(r.code).toBe(0)
      expect(r.json.requireMa).toBe(false)
      expect(r.json.pam.line).not.toContain('require_message_authenticator')
      expect(r.stderr).toContain(`${path}:1: this pam_radius_auth (before 3.0) sends no Message-Authenticator: "require-ma" drops every request`)
    },
  )
})
