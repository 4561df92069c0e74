import {createHash, randomBytes} from 'node:crypto'
import {chmodSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {createSocket} from 'node:dgram'
import {afterAll, beforeAll, describe, expect, it, onTestFinished} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {hotp, timeStep} from '../../src/core/totp.js'
import {checkLogin} from '../../src/login/check.js'
import {loadClients, matchClient, parseClients} from '../../src/radius/clients.js'
import {
  ATTR,
  checkMessageAuthenticator,
  checkResponse,
  CODE,
  decodePacket,
  encodeRequest,
  encodeResponse,
  hidePassword,
  PacketError,
  revealPassword,
  text,
} from '../../src/radius/packet.js'
import {RadiusMetrics} from '../../src/radius/metrics.js'
import {type Observation, RadiusServer} from '../../src/radius/server.js'
import {StateBook} from '../../src/radius/state.js'
import {FileBackend} from '../../src/store/file/backend.js'
import {tempStore} from '../helpers/cli.js'
import {radiusRequest, sendRaw} from '../helpers/radius.js'

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex')

describe('RADIUS packets (RFC 2865, RFC 3579)', () => {
  // RFC 2865 §7.1: User-Name "nemo", password "arctangent", secret "xyzzy5461".
  const rfcRequest = hex(`01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
    93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8 01 10 05 06 00 00 00 03`)
  const rfcSecret = Buffer.from('xyzzy5461')

  it('decodes the RFC 2865 example request and reveals its password', () => {
    const p = decodePacket(rfcRequest)
    expect(p).toMatchObject({code: CODE.accessRequest, id: 0})
    expect(p.attributes.map((a) => a.type)).toEqual([1, 2, 4, 5])
    expect(p.attributes[0].value.toString()).toBe('nemo')
    expect(revealPassword(p.attributes[1].value, rfcSecret, p.authenticator)).toBe('arctangent')
    expect(hidePassword('arctangent', rfcSecret, p.authenticator)).toEqual(p.attributes[1].value)
  })

  it('computes the RFC 2865 example Response Authenticator', () => {
    const response = hex('02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03')
    const copy = Buffer.from(response)
    rfcRequest.copy(copy, 4, 4, 20)
    expect(createHash('md5').update(copy).update(rfcSecret).digest()).toEqual(response.subarray(4, 20))
  })

  it('hides and reveals passwords of every length up to 128 octets', () => {
    const secret = randomBytes(12)
    for (const len of [0, 1, 15, 16, 17, 31, 32, 33, 100, 128]) {
      const auth = randomBytes(16)
      const password = 'x'.repeat(len)
      const hidden = hidePassword(password, secret, auth)
      expect(hidden.length % 16).toBe(0)
      expect(revealPassword(hidden, secret, auth)).toBe(password)
    }
    expect(() => revealPassword(Buffer.alloc(15), secret, randomBytes(16))).toThrow(PacketError)
    expect(() => revealPassword(Buffer.alloc(144), secret, randomBytes(16))).toThrow(/16\.\.128/)
  })

  it('signs requests and responses with a Message-Authenticator the other side checks', () => {
    const secret = Buffer.from('s3cret')
    const auth = randomBytes(16)
    const req = encodeRequest({id: 7, authenticator: auth, attributes: [{type: ATTR.userName, value: text('alice')}], secret})
    const packet = decodePacket(req)
    expect(packet.attributes[0].type).toBe(ATTR.messageAuthenticator)
    expect(checkMessageAuthenticator(packet, secret)).toBe(true)
    expect(() => checkMessageAuthenticator(packet, Buffer.from('other'))).toThrow(/wrong Message-Authenticator/)
    const unsigned = decodePacket(encodeRequest({id: 7, authenticator: auth, attributes: [], secret, messageAuthenticator: false}))
    expect(checkMessageAuthenticator(unsigned, secret)).toBe(false)
    const tampered = Buffer.from(req)
    tampered[tampered.length - 1] ^= 1
    expect(() => checkMessageAuthenticator(decodePacket(tampered), secret)).toThrow(PacketError)

    const res = encodeResponse(packet, CODE.accessAccept, [{type: ATTR.replyMessage, value: text('hi')}], secret)
    const back = checkResponse(res, auth, secret)
    expect(back.code).toBe(CODE.accessAccept)
    expect(back.attributes[0].type).toBe(ATTR.messageAuthenticator) // first: BlastRADIUS
    expect(() => checkResponse(res, randomBytes(16), secret)).toThrow(/Response Authenticator/)
    expect(() => checkResponse(res, auth, Buffer.from('other'))).toThrow(PacketError)
  })

  it('refuses bad framing, each with its own reason', () => {
    const ok = encodeRequest({id: 1, authenticator: randomBytes(16), attributes: [{type: 1, value: text('bob')}], secret: Buffer.from('s')})
    const reason = (b: Buffer) => {
      try {
        decodePacket(b)
        return 'decoded'
      } catch (error) {
        return (error as PacketError).reason
      }
    }
    expect(reason(ok.subarray(0, 19))).toMatch(/too short/)
    expect(reason(ok.subarray(0, ok.length - 1))).toMatch(/truncated/)
    const unknown = Buffer.from(ok)
    unknown[0] = 99
    expect(reason(unknown)).toMatch(/unknown code 99/)
    const short = Buffer.from(ok)
    short.writeUInt16BE(19, 2)
    expect(reason(short)).toMatch(/outside 20\.\.4096/)
    const zeroAttr = Buffer.from(ok)
    zeroAttr[21] = 0
    expect(reason(zeroAttr)).toMatch(/length 0/)
    const overrun = Buffer.from(ok)
    overrun[HEADER + 1] = 200
    expect(reason(overrun)).toMatch(/runs past the end/)
    expect(reason(Buffer.concat([ok, Buffer.alloc(5)]))).toBe('decoded') // padding past Length is ignored
  })
})
const HEADER = 20

describe('State (challenge mode)', () => {
  const key = Buffer.from('secret')
  it('is good once, for its user and client, until it expires', () => {
    let now = 1_800_000_000_000
    const book = new StateBook(300, () => now)
    const s = book.issue(key, 'alice', '127.0.0.1')
    expect(book.take(s, key, 'bob', '127.0.0.1')).toBe('state_forged')
    expect(book.take(s, key, 'alice', '10.0.0.0/8')).toBe('state_forged')
    expect(book.take(s, Buffer.from('other'), 'alice', '127.0.0.1')).toBe('state_forged')
    expect(book.take(s, key, 'alice', '127.0.0.1')).toBeUndefined()
    expect(book.take(s, key, 'alice', '127.0.0.1')).toBe('state_replayed')
    const late = book.issue(key, 'alice', '127.0.0.1')
    now += 301_000
    expect(book.take(late, key, 'alice', '127.0.0.1')).toBe('state_expired')
    expect(book.take(randomBytes(37), key, 'alice', '127.0.0.1')).toMatch(/state_(malformed|forged)/)
    expect(book.take(Buffer.alloc(3), key, 'alice', '127.0.0.1')).toBe('state_malformed')
    const forged = Buffer.from(book.issue(key, 'alice', '127.0.0.1'))
    forged.writeUInt32BE(forged.readUInt32BE(1) + 3600, 1) // a longer life
    expect(book.take(forged, key, 'alice', '127.0.0.1')).toBe('state_forged')
  })
})

describe('clients file', () => {
  const store = tempStore()
  afterAll(() => store.cleanup())
  const file = (name: string, body: string, mode = 0o600) => {
    const path = join(store.dir, name)
    writeFileSync(path, body, {mode})
    chmodSync(path, mode)
    return path
  }

  it('reads addresses, networks, modes, require-ma and comments; the narrowest network wins', () => {
    const clients = parseClients(
      ['# NAS list', '10.0.0.0/8 wide-secret', '10.1.2.3 host#secret challenge require-ma  # the bastion', '', '::1 v6 code', '2001:db8::/32 net6'].join('\n'),
      'clients',
    )
    expect(clients).toHaveLength(4)
    const bastion = matchClient(clients, '10.1.2.3')!
    expect(bastion).toMatchObject({network: '10.1.2.3', mode: 'challenge', requireMa: true, line: 3})
    expect(bastion.secret.toString()).toBe('host#secret')
    expect(matchClient(clients, '10.9.9.9')).toMatchObject({network: '10.0.0.0/8', mode: 'code', requireMa: false})
    expect(matchClient(clients, '::ffff:10.1.2.3')?.network).toBe('10.1.2.3')
    expect(matchClient(clients, '::1')?.network).toBe('::1')
    expect(matchClient(clients, '2001:db8:1::5')?.network).toBe('2001:db8::/32')
    expect(matchClient(clients, '192.168.1.1')).toBeUndefined()
  })

  it('refuses malformed lines as FILE:LINE: reason', () => {
    const bad = (body: string) => () => parseClients(body, '/etc/c')
    expect(bad('# ok\n10.0.0.300 s')).toThrow('/etc/c:2: "10.0.0.300" is not an IPv4 or IPv6 address')
    expect(bad('10.0.0.0/33 s')).toThrow('/etc/c:1: "/33" is not a prefix length (0..32)')
    expect(bad('10.0.0.1')).toThrow('/etc/c:1: no shared secret after the address')
    expect(bad('10.0.0.1 s pap')).toThrow('/etc/c:1: unknown word "pap"')
    expect(bad('10.0.0.1 s code challenge')).toThrow('/etc/c:1: mode given twice')
    expect(bad('10.0.0.1 s\n10.0.0.1 t')).toThrow('/etc/c:2: 10.0.0.1 is already listed on line 1')
  })

  it('refuses a file others can read, a link, a missing file and an empty one, naming the file', () => {
    const open = file('open', '127.0.0.1 s\n', 0o644)
    expect(() => loadClients(open)).toThrow(`${open}: holds shared secrets but can be read or written by group or others (mode 644)`)
    const good = file('good', '127.0.0.1 s\n')
    const link = join(store.dir, 'link')
    symlinkSync(good, link)
    expect(() => loadClients(link)).toThrow(`${link}: is a symbolic link`)
    expect(() => loadClients(join(store.dir, 'none'))).toThrow('no such clients file')
    expect(() => loadClients(file('empty', '# nobody\n'))).toThrow('lists no client')
    expect(loadClients(good)).toHaveLength(1)
  })
})

describe('RadiusServer with a real file store', () => {
  const store = tempStore()
  const secret = 'unit-secret'
  let server: RadiusServer
  let port: number
  let key: Buffer
  const logs: string[] = []
  const audit: any[] = []
  beforeAll(async () => {
    expect((await store.run(['twofactor:enable', '--ssh', '--fail-delay', '0', '--window', '1'])).code).toBe(0)
    const r = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])
    key = base32Decode(r.json.users[0].secret)!
    const files = new FileBackend(store.path)
    const clients = parseClients(`127.0.0.1 ${secret} challenge\n`, 'clients')
    server = new RadiusServer({
      clients,
      judge: async ({user, code, service}) => (await checkLogin(files, {user, service, method: 'password', code})).result,
      audit: (e) => audit.push(e),
      log: (l) => logs.push(l),
    })
    port = await server.listen('127.0.0.1', 0)
  })
  afterAll(async () => {
    await server.close()
    store.cleanup()
  })
  const code = (offset = 0) => hotp(key, timeStep(Date.now(), 30) + offset, 6)

  it('challenges a user with a secret, then accepts the code sent back with the State, once', async () => {
    const first = await radiusRequest({port, secret, user: 'alice', password: 'the-unix-password'})
    expect(first).toMatchObject({kind: 'challenge', reply: '2FA code: ', prompt: 0})
    const state = (first as any).state as Buffer
    const c = code()
    expect(await radiusRequest({port, secret, user: 'alice', password: c, state})).toMatchObject({kind: 'accept'})
    expect(await radiusRequest({port, secret, user: 'alice', password: c, state})).toMatchObject({kind: 'reject'}) // State used up
    expect(audit.at(-1)).toMatchObject({user: 'alice', outcome: 'denied', reason: 'state_replayed', client: '127.0.0.1'})
    const again = (await radiusRequest({port, secret, user: 'alice', password: ''})) as any
    expect(await radiusRequest({port, secret, user: 'alice', password: c, state: again.state})).toMatchObject({kind: 'reject'})
    expect(audit.at(-1)).toMatchObject({reason: 'code_replayed'})
    const other = (await radiusRequest({port, secret, user: 'alice'})) as any
    expect(await radiusRequest({port, secret, user: 'bob', password: code(), state: other.state})).toMatchObject({kind: 'reject'})
    expect(audit.at(-1)).toMatchObject({user: 'bob', reason: 'state_forged'})
    expect(JSON.stringify(audit) + logs.join('\n')).not.toContain('the-unix-password')
  })

  it('accepts a user without a secret at once (challenge mode)', async () => {
    expect(await radiusRequest({port, secret, user: 'nora', password: 'pw'})).toMatchObject({kind: 'accept'})
    expect(audit.at(-1)).toMatchObject({user: 'nora', outcome: 'allowed', reason: 'no_secret'})
  })

  it('drops requests with a wrong Message-Authenticator or from a wrong secret; answers retransmissions alike', async () => {
    expect(await radiusRequest({port, secret: 'wrong', user: 'nora', timeoutMs: 500})).toBe('timeout')
    const auth = randomBytes(16)
    const req = encodeRequest({id: 9, authenticator: auth, attributes: [{type: ATTR.userName, value: text('nora')}], secret: Buffer.from(secret)})
    const a = await sendRaw(req, port)
    const b = await sendRaw(req, port)
    expect(a).toEqual(b)
    expect(checkResponse(a as Buffer, auth, Buffer.from(secret)).code).toBe(CODE.accessAccept)
  })

  it('on one client socket: a retransmission gets the same answer once decided, a new request on a reused id is decided anew', async () => {
    const socket = createSocket('udp4')
    onTestFinished(() => {
      socket.close()
    })
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
    const replies: Buffer[] = []
    socket.on('message', (m) => replies.push(m))
    const exchange = async (datagram: Buffer): Promise<Buffer> => {
      const before = replies.length
      socket.send(datagram, port, '127.0.0.1')
      for (let i = 0; i < 300 && replies.length === before; i++) await new Promise((r) => setTimeout(r, 10))
      expect(replies.length).toBe(before + 1)
      return replies.at(-1)!
    }
    const request = (id: number, authenticator: Buffer) =>
      encodeRequest({id, authenticator, attributes: [{type: ATTR.userName, value: text('nora')}], secret: Buffer.from(secret)})
    const [a, b] = [randomBytes(16), randomBytes(16)]
    const duplicates = server.stats.duplicates
    const first = await exchange(request(7, a))
    expect(checkResponse(first, a, Buffer.from(secret)).code).toBe(CODE.accessAccept)
    const reused = await exchange(request(7, b)) // the same id, another authenticator: another request
    expect(checkResponse(reused, b, Buffer.from(secret)).code).toBe(CODE.accessAccept)
    expect(server.stats.duplicates).toBe(duplicates)
    expect((await exchange(request(7, b))).equals(reused)).toBe(true) // a retransmission: the answer remembered
    expect(server.stats.duplicates).toBe(duplicates + 1)
    const remembered = server.remembered
    for (let i = 0; i < 300; i++) await exchange(request(i % 256, randomBytes(16)))
    expect(server.remembered - remembered).toBeLessThanOrEqual(256) // one entry per id of this socket
  })

  it('drops requests from addresses not in the clients file; sends Proxy-State back', async () => {
    const other = new RadiusServer({
      clients: parseClients(`10.0.0.0/8 ${secret}\n`, 'c'),
      judge: async () => ({allowed: true, reason: 'no_secret'}),
      audit: () => {},
      log: () => {},
    })
    const otherPort = await other.listen('127.0.0.1', 0)
    try {
      expect(await radiusRequest({port: otherPort, secret, user: 'nora', timeoutMs: 500})).toBe('timeout')
      expect(other.stats.dropped).toBe(1)
    } finally {
      await other.close()
    }
    const proxied = (await radiusRequest({
      port,
      secret,
      user: 'nora',
      extra: [
        {type: ATTR.proxyState, value: text('p1')},
        {type: ATTR.proxyState, value: text('p2')},
      ],
    })) as any
    expect(proxied.packet.attributes.filter((a: any) => a.type === ATTR.proxyState).map((a: any) => a.value.toString())).toEqual(['p1', 'p2'])
  })

  it('answers a signed Status-Server with a bare Access-Accept, without the store; drops an unsigned one', async () => {
    let judged = 0
    const observed: Observation[] = []
    const probe = new RadiusServer({
      clients: parseClients(`127.0.0.1 ${secret} challenge\n`, 'c'),
      judge: async () => {
        judged++
        return {allowed: true, reason: 'no_secret'}
      },
      audit: () => judged++,
      log: () => {},
      observe: (event) => observed.push(event),
    })
    const probePort = await probe.listen('127.0.0.1', 0)
    try {
      const answer = await radiusRequest({port: probePort, secret, code: CODE.statusServer})
      expect(answer).toMatchObject({kind: 'accept'})
      expect((answer as any).packet.attributes.map((a: any) => a.type)).toEqual([ATTR.messageAuthenticator]) // nothing else: no user, no reply
      const naming = await radiusRequest({port: probePort, secret, code: CODE.statusServer, user: 'alice', password: 'x'})
      expect((naming as any).packet.attributes.map((a: any) => a.type)).toEqual([ATTR.messageAuthenticator]) // a User-Name changes nothing
      expect(await radiusRequest({port: probePort, secret, code: CODE.statusServer, messageAuthenticator: false, user: 'alice', timeoutMs: 500})).toBe(
        'timeout',
      )
      expect(await radiusRequest({port: probePort, secret: 'wrong', code: CODE.statusServer, timeoutMs: 500})).toBe('timeout')
      expect(judged).toBe(0) // neither the login check nor the audit trail
      expect(probe.stats).toMatchObject({status: 2, dropped: 2, accepted: 0})
      expect(observed.map((o) => `${o.client} ${o.outcome} ${o.reason}`)).toEqual([
        '127.0.0.1 status status_server',
        '127.0.0.1 status status_server',
        '127.0.0.1 dropped noma',
        '127.0.0.1 dropped ma',
      ])
    } finally {
      await probe.close()
    }
  })

  it('never crashes on random or mangled datagrams, and answers a good request after them', async () => {
    const good = encodeRequest({id: 3, authenticator: randomBytes(16), attributes: [{type: ATTR.userName, value: text('nora')}], secret: Buffer.from(secret)})
    // from a socket of this (root) process, so that the datagrams get past the local-sender check
    const sender = createSocket('udp4')
    await new Promise<void>((resolve) => sender.bind(0, '127.0.0.1', () => resolve()))
    const rinfo = {address: '127.0.0.1', port: sender.address().port, family: 'IPv4' as const, size: 0}
    onTestFinished(() => {
      sender.close()
    })
    const before = server.stats.errors
    for (let i = 0; i < 3000; i++) {
      let d: Buffer
      if (i % 3 === 0) d = randomBytes(Math.floor(Math.random() * 120))
      else {
        d = Buffer.from(good)
        for (let k = 0; k < 1 + (i % 4); k++) d[Math.floor(Math.random() * d.length)] = Math.floor(Math.random() * 256)
        if (i % 5 === 0) d = d.subarray(0, Math.floor(Math.random() * d.length))
        if (i % 7 === 0) d[0] = CODE.accessRequest
      }
      await server.receive(d, rinfo)
    }
    expect(server.stats.errors).toBe(before)
    expect(await radiusRequest({port, secret, user: 'nora'})).toMatchObject({kind: 'accept'})
  })

  it('rejects (never accepts) when the store cannot be read, and recovers', async () => {
    chmodSync(store.path, 0o644) // tfactl refuses a store others can read
    try {
      const first = await radiusRequest({port, secret, user: 'nora'})
      expect(first).toMatchObject({kind: 'reject'})
      expect(audit.at(-1)).toMatchObject({outcome: 'error', reason: 'store_unavailable'})
    } finally {
      chmodSync(store.path, 0o600)
    }
    expect(await radiusRequest({port, secret, user: 'nora'})).toMatchObject({kind: 'accept'})
  })
})

describe('RadiusMetrics (Prometheus text format)', () => {
  it('counts requests by client, outcome and reason, and puts decided ones in the latency histogram', () => {
    const m = new RadiusMetrics(() => ({inUse: 3, waiting: 1}))
    m.observe({client: '10.0.0.0/24', outcome: 'allowed', reason: 'code_accepted', seconds: 0.0004})
    m.observe({client: '10.0.0.0/24', outcome: 'allowed', reason: 'code_accepted', seconds: 0.015})
    m.observe({client: '127.0.0.1', outcome: 'error', reason: 'store_unavailable', seconds: 0.003})
    m.observe({client: '-', outcome: 'dropped', reason: 'unknown', seconds: 0})
    m.observe({client: 'a"b\\c', outcome: 'denied', reason: 'code_wrong', seconds: 20})
    const text = m.render()
    expect(text).toContain('tfactl_radius_requests_total{client="10.0.0.0/24",outcome="allowed",reason="code_accepted"} 2\n')
    expect(text).toContain('tfactl_radius_requests_total{client="-",outcome="dropped",reason="unknown"} 1\n')
    expect(text).toContain('tfactl_radius_requests_total{client="a\\"b\\\\c",outcome="denied",reason="code_wrong"} 1\n')
    expect(text).toContain('tfactl_radius_request_duration_seconds_bucket{le="0.001"} 1\n')
    expect(text).toContain('tfactl_radius_request_duration_seconds_bucket{le="0.005"} 2\n')
    expect(text).toContain('tfactl_radius_request_duration_seconds_bucket{le="0.02"} 3\n')
    expect(text).toContain('tfactl_radius_request_duration_seconds_bucket{le="10"} 3\n')
    expect(text).toContain('tfactl_radius_request_duration_seconds_bucket{le="+Inf"} 4\n')
    expect(text).toContain('tfactl_radius_request_duration_seconds_count 4\n')
    expect(text).toContain('tfactl_radius_store_errors_total 1\n')
    expect(text).toContain('tfactl_radius_db_pool_in_use 3\n')
    expect(text).toContain('tfactl_radius_db_pool_waiting 1\n')
    for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) expect(line).toMatch(/^[a-z_]+(\{.*\})? [0-9.e+-]+$/)
    expect(new RadiusMetrics().render()).not.toContain('db_pool') // a file store has no pool
  })
})
