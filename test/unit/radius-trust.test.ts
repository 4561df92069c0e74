// What the RADIUS responder trusts: a request proves the shared secret (a Message-Authenticator,
// or a User-Password that reveals text or a code under it), a local sender is root, a code client
// lets in only checked codes, and the memory of answers is bounded. The pure parts as tables;
// the responder in-process over real UDP for the parts that need one.
import {randomBytes} from 'node:crypto'
import {createSocket} from 'node:dgram'
import {existsSync, readFileSync} from 'node:fs'
import {endianness, networkInterfaces} from 'node:os'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import type {Reason} from '../../src/core/login.js'
import {hotp, timeStep} from '../../src/core/totp.js'
import {checkLogin} from '../../src/login/check.js'
import {parseClients} from '../../src/radius/clients.js'
import {ATTR, encodeRequest, hidePassword, text} from '../../src/radius/packet.js'
import {findPamRadius, PAM_RADIUS_MODULES, pamRadiusLine, supportsMessageAuthenticator} from '../../src/radius/pam.js'
import type {UdpTables} from '../../src/os/sockets.js'
import {addressBytes, isLocalAddress, localSenderIsRoot, socketOwners} from '../../src/radius/peer.js'
import {provenPassword} from '../../src/radius/proof.js'
import {codeClientAllows, RadiusServer} from '../../src/radius/server.js'
import {FileBackend} from '../../src/store/file/backend.js'
import {tempStore} from '../helpers/cli.js'
import {radiusRequest, sendRaw} from '../helpers/radius.js'

describe('a User-Password proves the shared secret only when it reveals text or a code', () => {
  const secret = Buffer.from('the-shared-secret')
  const proven = (password: string, shape: 'text' | 'code', key = secret) => {
    const authenticator = randomBytes(16)
    return provenPassword(hidePassword(password, secret, authenticator), key, authenticator, shape)
  }

  it('reveals what a client that holds the secret hid: passwords, codes, recovery and bypass codes, nothing', () => {
    for (const p of ['', 'correct horse battery staple', 'pässwörd-日本', 'x'.repeat(16), 'y'.repeat(128)]) expect(proven(p, 'text')).toBe(p)
    for (const c of ['', '123456', '12345678', 'K3JQ7-MX2PA', 'k3jq7 mx2pa 4tq2z', 'ABCDE-FGHIJ-KLMNO']) expect(proven(c, 'code')).toBe(c)
  })

  it('refuses what a client without the secret sends: another secret, random octets, odd lengths', () => {
    expect(proven('123456', 'code', Buffer.from('guess'))).toBeUndefined()
    expect(proven('a password', 'text', Buffer.from('guess'))).toBeUndefined()
    for (const length of [0, 1, 15, 17, 144]) expect(provenPassword(randomBytes(length), secret, randomBytes(16), 'text')).toBeUndefined()
    // Measured: random octets as a code essentially never pass (about 2.4e-10 each), as text rarely (about 2.7e-6).
    let code = 0
    let textual = 0
    for (let i = 0; i < 20_000; i++) {
      const auth = randomBytes(16)
      const hidden = randomBytes(16)
      if (provenPassword(hidden, secret, auth, 'code') !== undefined) code++
      if (provenPassword(hidden, secret, auth, 'text') !== undefined) textual++
    }
    expect(code).toBe(0)
    expect(textual).toBeLessThanOrEqual(3) // expected about 0.05
  })

  it('refuses clear text that is not a password or a code: controls, bad UTF-8, NUL inside, too much padding', () => {
    const raw = (clear: Buffer, shape: 'text' | 'code') => {
      const authenticator = randomBytes(16)
      // hidePassword pads with NULs; to hide arbitrary octets (padding included), hide a full block of them
      const padded = Buffer.alloc(Math.max(16, Math.ceil(clear.length / 16) * 16))
      clear.copy(padded)
      return provenPassword(hidePassword(padded.toString('latin1'), secret, authenticator), secret, authenticator, shape)
    }
    expect(raw(Buffer.from('pass\tword'), 'text')).toBeUndefined()
    expect(raw(Buffer.from('pass\u007fword'), 'text')).toBeUndefined()
    expect(raw(Buffer.from('pass\u0085word'), 'text')).toBeUndefined()
    expect(raw(Buffer.from([0x70, 0xc3, 0x28, 0x70]), 'text')).toBeUndefined() // invalid UTF-8
    expect(raw(Buffer.from([0x61, 0, 0x62]), 'text')).toBeUndefined() // a NUL inside
    expect(raw(Buffer.concat([Buffer.from('abc'), Buffer.alloc(29)]), 'text')).toBeUndefined() // 32 octets for 3
    expect(raw(Buffer.from('abc'), 'text')).toBe('abc')
    expect(proven('123456!', 'code')).toBeUndefined()
    expect(proven('12345\u00e9', 'code')).toBeUndefined()
    expect(proven('123 456', 'code')).toBe('123 456')
  })
})

describe('the owner of a local sender comes from the kernel socket tables', () => {
  const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n'
  /** One /proc/net line: each 32-bit word of the address in the host's byte order, as the kernel writes it. */
  const row = (address: string, port: number, uid: number) => {
    const bytes = Buffer.from(addressBytes(address)!)
    const full = address.includes(':') && bytes.length === 4 ? Buffer.concat([Buffer.from('00000000000000000000ffff', 'hex'), bytes]) : bytes
    if (endianness() === 'LE') for (let i = 0; i < full.length; i += 4) full.subarray(i, i + 4).reverse()
    const hex = `${full.toString('hex').toUpperCase()}:${port.toString(16).toUpperCase().padStart(4, '0')}`
    return `   7: ${hex} ${'0'.repeat(full.length * 2)}:0000 07 00000000:00000000 00:00000000 00000000 ${String(uid).padStart(5)}        0 4242 2 0000000000000000 0\n`
  }
  const tables = (udp: string[], udp6: string[]): UdpTables => ({udp: header + udp.join(''), udp6: header + udp6.join('')})

  it('finds the socket bound to the source port on that address or the wildcard, in IPv4 and IPv6', () => {
    const t = tables(
      [row('127.0.0.1', 40000, 0), row('0.0.0.0', 40001, 1001), row('127.0.0.2', 40002, 1002)],
      [row('::1', 40003, 1003), row('::', 40004, 1004), row('::ffff:127.0.0.1', 40005, 1005)],
    )
    expect(socketOwners(t, '127.0.0.1', 40000)).toEqual([0])
    expect(socketOwners(t, '127.0.0.1', 40001)).toEqual([1001]) // bound to 0.0.0.0
    expect(socketOwners(t, '127.0.0.1', 40002)).toEqual([]) // another address
    expect(socketOwners(t, '::1', 40003)).toEqual([1003])
    expect(socketOwners(t, '::1', 40004)).toEqual([1004])
    expect(socketOwners(t, '127.0.0.1', 40004)).toEqual([1004]) // a dual-stack socket bound to ::
    expect(socketOwners(t, '::ffff:127.0.0.1', 40004)).toEqual([1004])
    expect(socketOwners(t, '127.0.0.1', 40005)).toEqual([1005]) // bound to ::ffff:127.0.0.1
    expect(socketOwners(t, '::ffff:127.0.0.1', 40000)).toEqual([0]) // the responder on [::] sees IPv4 as mapped
    expect(socketOwners(t, '::1', 40001)).toEqual([]) // an IPv4 wildcard sends no IPv6
  })

  it("serves a local sender only when every socket that could have sent it is root's", () => {
    const t = tables([row('127.0.0.1', 40000, 0), row('0.0.0.0', 40001, 0), row('127.0.0.1', 40001, 1001)], [row('::', 40002, 0)])
    expect(localSenderIsRoot(t, '127.0.0.1', 40000)).toBe(true)
    expect(localSenderIsRoot(t, '::ffff:127.0.0.1', 40002)).toBe(true)
    expect(localSenderIsRoot(t, '127.0.0.1', 40001)).toBe(false) // a second socket on the port is not root's
    expect(localSenderIsRoot(t, '127.0.0.1', 40009)).toBe(false) // gone: fails closed
    expect(localSenderIsRoot({udp: '', udp6: ''}, '127.0.0.1', 40000)).toBe(false) // no /proc: fails closed
  })

  it('reads the real tables: a socket of this (root) process is found', async () => {
    const socket = createSocket('udp6')
    await new Promise<void>((resolve) => socket.bind(0, '::', () => resolve()))
    try {
      const real = {udp: readFileSync('/proc/net/udp', 'latin1'), udp6: readFileSync('/proc/net/udp6', 'latin1')}
      const port = socket.address().port
      expect(socketOwners(real, '127.0.0.1', port)).toEqual([process.getuid!()])
      expect(socketOwners(real, '::1', port)).toEqual([process.getuid!()])
    } finally {
      socket.close()
    }
  })

  it("knows which sources are this host: loopback in every form and the interfaces' addresses", () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1', '::ffff:7f00:1']) expect(isLocalAddress(a), a).toBe(true)
    for (const a of ['198.51.100.77', '2001:db8::1', '::ffff:198.51.100.77', 'nonsense']) expect(isLocalAddress(a), a).toBe(false)
    for (const i of Object.values(networkInterfaces()).flatMap((l) => l ?? [])) expect(isLocalAddress(i.address), i.address).toBe(true)
  })
})

describe('a code client lets in only a checked code, unless its line says allow-no-secret', () => {
  const row = (reason: Reason, allowed: boolean, strict: boolean, lenient: boolean) => ({reason, allowed, strict, lenient})
  const table = [
    row('code_accepted', true, true, true),
    row('recovery_code_accepted', true, true, true),
    row('bypass_accepted', true, true, true),
    row('no_secret', true, false, true),
    row('twofactor_disabled', true, false, true),
    row('ssh_2fa_off', true, false, true),
    row('code_invalid', false, false, false),
    row('code_required', false, false, false),
    row('locked_out', false, false, false),
    row('stig_requires_2fa', false, false, false),
  ]
  it.each(table)('$reason (allowed: $allowed) → $strict, with allow-no-secret $lenient', ({reason, allowed, strict, lenient}) => {
    expect(codeClientAllows({allowed, reason}, {allowNoSecret: false})).toBe(strict)
    expect(codeClientAllows({allowed, reason}, {allowNoSecret: true})).toBe(lenient)
  })

  it('reads allow-no-secret on code lines only', () => {
    const [vpn] = parseClients('10.0.0.0/8 s code allow-no-secret', 'c')
    expect(vpn).toMatchObject({mode: 'code', allowNoSecret: true})
    expect(parseClients('10.0.0.0/8 s', 'c')[0].allowNoSecret).toBe(false)
    expect(() => parseClients('10.0.0.1 s challenge allow-no-secret', '/etc/c')).toThrow('/etc/c:1: "allow-no-secret" is for code clients')
    expect(() => parseClients('10.0.0.1 s allow-no-secret allow-no-secret', '/etc/c')).toThrow('/etc/c:1: "allow-no-secret" given twice')
  })
})

describe('pam_radius_auth 3.0 and the Message-Authenticator', () => {
  const installed = PAM_RADIUS_MODULES.find((p) => existsSync(p))

  it('requires signed answers only where the module knows require_message_authenticator', () => {
    expect(supportsMessageAuthenticator(Buffer.from('\0skip_passwd\0prompt_attribute\0'))).toBe(false) // 2.0
    expect(supportsMessageAuthenticator(Buffer.from('\0skip_passwd\0require_message_authenticator\0'))).toBe(true) // 3.0
    expect(pamRadiusLine('/c', true)).toBe(
      'auth [success=ok default=die] pam_radius_auth.so conf=/c skip_passwd prompt_attribute require_message_authenticator',
    )
    expect(pamRadiusLine('/c')).not.toContain('require_message_authenticator')
    expect(findPamRadius(`@include common-auth\n${pamRadiusLine('/c', true)}\n`)).toMatchObject({requireMa: true, skipPasswd: true})
    expect(findPamRadius(`@include common-auth\n${pamRadiusLine('/c')}\n`)).toMatchObject({requireMa: false})
  })

  it.skipIf(!installed)("judges Debian 12's pam_radius_auth 2.0 as not signing", () => {
    expect(supportsMessageAuthenticator(readFileSync(installed!))).toBe(false)
  })
})

describe('the responder remembers a bounded number of answers', () => {
  const store = tempStore()
  const secret = 'memory-secret'
  let server: RadiusServer
  let port: number
  let key: Buffer
  const audit: unknown[] = []
  beforeAll(async () => {
    expect((await store.run(['twofactor:enable', '--ssh', '--fail-delay', '0', '--max-failures', '1'])).code).toBe(0)
    key = base32Decode((await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])).json.users[0].secret)!
    const files = new FileBackend(store.path)
    server = new RadiusServer({
      clients: parseClients(`127.0.0.1 ${secret} challenge\n`, 'clients'),
      judge: async ({user, code, service}) => (await checkLogin(files, {user, service, method: 'password', code})).result,
      audit: (e) => audit.push(e),
      log: () => {},
      maxRemembered: 20,
    })
    port = await server.listen('127.0.0.1', 0)
  })
  afterAll(async () => {
    await server.close()
    store.cleanup()
  })

  it('a request whose answer could not hold its Proxy-State gets no answer, no decision and no memory', async () => {
    // 4025 octets of Proxy-State: the request fits in 4096, a challenge carrying them back would not
    const proxy = [...Array.from({length: 15}, () => ({type: ATTR.proxyState, value: randomBytes(253)})), {type: ATTR.proxyState, value: randomBytes(198)}]
    for (let i = 0; i < 10; i++)
      expect(await radiusRequest({port, secret, user: 'alice', password: 'unix', extra: proxy, messageAuthenticator: false, timeoutMs: 300})).toBe('timeout')
    expect(server.remembered).toBe(0)
    expect(audit).toHaveLength(0) // never decided
    const first = await radiusRequest({port, secret, user: 'alice', password: 'unix', extra: proxy.slice(1)})
    expect(first).toMatchObject({kind: 'challenge'})
    const code = hotp(key, timeStep(Date.now(), 30), 6)
    expect(await radiusRequest({port, secret, user: 'alice', password: code, state: (first as any).state})).toMatchObject({kind: 'accept'})
  })

  it('a flood of answered requests keeps at most the configured number of answers', async () => {
    for (let i = 0; i < 60; i++) {
      const request = encodeRequest({
        id: i,
        authenticator: randomBytes(16),
        attributes: [{type: ATTR.userName, value: text(`u${i}`)}], // signed: no password needed
        secret: Buffer.from(secret),
      })
      expect(await sendRaw(request, port)).not.toBe('timeout')
    }
    expect(server.remembered).toBeLessThanOrEqual(20)
    expect(server.remembered).toBeGreaterThan(0)
  })
})
