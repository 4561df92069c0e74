// Test helper: a minimal RADIUS client over real UDP (the client side of src/radius/packet.ts),
// and a responder (`tfactl radius:serve`, the real binary) started on a free port.
import {spawn, type ChildProcess} from 'node:child_process'
import {createSocket} from 'node:dgram'
import {randomBytes} from 'node:crypto'
import {chmodSync, writeFileSync} from 'node:fs'
import {ATTR, type Attribute, checkResponse, CODE, encodeRequest, findAttribute, hidePassword, type Packet, text} from '../../src/radius/packet.js'
import {BIN} from './cli.js'
import {asMallory} from './mallory.js'

export interface RadiusAnswer {
  code: number
  kind: 'accept' | 'reject' | 'challenge' | 'other'
  packet: Packet
  state?: Buffer
  reply?: string
  prompt?: number
}

const KINDS: Record<number, RadiusAnswer['kind']> = {[CODE.accessAccept]: 'accept', [CODE.accessReject]: 'reject', [CODE.accessChallenge]: 'challenge'}

export interface RequestOptions {
  port: number
  host?: string
  secret: string
  user?: string
  password?: string
  state?: Buffer
  /** Send a Message-Authenticator (default true). */
  messageAuthenticator?: boolean
  extra?: Attribute[]
  timeoutMs?: number
  /** The request's code (default Access-Request; CODE.statusServer for a probe). */
  code?: number
}

/** One Access-Request; resolves with the verified answer, or 'timeout' when none came (a drop). */
export function radiusRequest(opts: RequestOptions): Promise<RadiusAnswer | 'timeout'> {
  const secret = Buffer.from(opts.secret)
  const authenticator = randomBytes(16)
  const attributes: Attribute[] = []
  if (opts.user !== undefined) attributes.push({type: ATTR.userName, value: text(opts.user)})
  if (opts.password !== undefined) attributes.push({type: ATTR.userPassword, value: hidePassword(opts.password, secret, authenticator)})
  if (opts.state) attributes.push({type: ATTR.state, value: opts.state})
  attributes.push(...(opts.extra ?? []))
  const datagram = encodeRequest({id: authenticator[0], authenticator, attributes, secret, messageAuthenticator: opts.messageAuthenticator, code: opts.code})
  return sendRaw(datagram, opts.port, opts.host, opts.timeoutMs).then((reply) => {
    if (reply === 'timeout') return reply
    const packet = checkResponse(reply, authenticator, secret)
    const prompt = findAttribute(packet, ATTR.prompt)
    return {
      code: packet.code,
      kind: KINDS[packet.code] ?? 'other',
      packet,
      state: findAttribute(packet, ATTR.state),
      reply: findAttribute(packet, ATTR.replyMessage)?.toString('utf8'),
      prompt: prompt?.readUInt32BE(0),
    }
  })
}

/** Sends one datagram from a fresh socket (udp6 for an IPv6 host); the first reply, or 'timeout'. */
export function sendRaw(datagram: Buffer, port: number, host = '127.0.0.1', timeoutMs = 3000): Promise<Buffer | 'timeout'> {
  return new Promise((resolve) => {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4')
    const timer = setTimeout(() => {
      socket.close()
      resolve('timeout')
    }, timeoutMs)
    socket.once('message', (msg) => {
      clearTimeout(timer)
      socket.close()
      resolve(msg)
    })
    socket.send(datagram, port, host)
  })
}

// What the attacker runs: one datagram from a socket of her own, the reply (hex) or "timeout".
const MALLORY_SENDER = `const [hex, host, port, family, ms] = process.argv.slice(1)
const s = require('node:dgram').createSocket(family)
const t = setTimeout(() => { console.log('timeout'); s.close() }, Number(ms))
s.on('message', (m) => { clearTimeout(t); console.log(m.toString('hex')); s.close() })
s.send(Buffer.from(hex, 'hex'), Number(port), host)`

/** sendRaw, from a socket of the unprivileged test user (test/helpers/mallory.ts); `family` defaults to the host's. */
export async function sendRawAsMallory(
  datagram: Buffer,
  port: number,
  host = '127.0.0.1',
  opts: {family?: 'udp4' | 'udp6'; timeoutMs?: number} = {},
): Promise<Buffer | 'timeout'> {
  const family = opts.family ?? (host.includes(':') ? 'udp6' : 'udp4')
  const r = await asMallory([process.execPath, '-e', MALLORY_SENDER, datagram.toString('hex'), host, String(port), family, String(opts.timeoutMs ?? 1000)])
  const out = r.stdout.trim()
  if (r.code !== 0 || !/^(timeout|[0-9a-f]+)$/.test(out)) throw new Error(`the sender as ${family} failed (${r.code}): ${r.stderr}`)
  return out === 'timeout' ? out : Buffer.from(out, 'hex')
}

/** Writes a clients file (0600). */
export function writeClients(path: string, lines: string[]): string {
  writeFileSync(path, lines.map((l) => `${l}\n`).join(''), {mode: 0o600})
  chmodSync(path, 0o600)
  return path
}

export interface Responder {
  port: number
  child: ChildProcess
  logs(): string
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>
}

/** Starts the real `tfactl radius:serve` (on 127.0.0.1 unless `listen` says otherwise) and waits until it answers. */
export async function startResponder(args: string[], env: NodeJS.ProcessEnv = {}, listen = '127.0.0.1:0'): Promise<Responder> {
  const child = spawn(process.execPath, [BIN, 'radius:serve', '--listen', listen, ...args], {
    env: {...process.env, NO_COLOR: '1', NODE_ENV: '', ...env},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let log = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (log += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`radius:serve did not start:\n${log}`)), 20_000)
    const look = () => {
      const m = /answering on [^\s]+:(\d+)/.exec(log)
      if (m) {
        clearTimeout(timer)
        resolve(Number(m[1]))
      }
    }
    child.stderr!.on('data', look)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`radius:serve exited ${code}:\n${log}`))
    })
  })
  child.removeAllListeners('exit')
  return {
    port,
    child,
    logs: () => log,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode) // already gone
        child.once('exit', (code) => resolve(code))
        child.kill('SIGTERM')
      }),
  }
}

/**
 * A load client: a few long-lived sockets, each with its own 256 request ids. An answer is
 * matched by id and must verify against that request's authenticator; a late answer to a
 * request that timed out (its id since reused) is ignored, never taken for the new one's.
 */
export function radiusClient(secret: string, sockets = 8) {
  const key = Buffer.from(secret)
  type Waiting = {authenticator: Buffer; resolve: (a: RadiusAnswer['kind'] | 'timeout') => void; timer: NodeJS.Timeout}
  const pool = Array.from({length: sockets}, () => {
    const socket = createSocket('udp4')
    const waiting = new Map<number, Waiting>()
    const free = Array.from({length: 256}, (_, i) => i)
    socket.on('message', (msg) => {
      const w = waiting.get(msg[1])
      if (!w) return
      let packet: Packet
      try {
        packet = checkResponse(msg, w.authenticator, key)
      } catch {
        return // not the answer to this request
      }
      waiting.delete(msg[1])
      free.push(msg[1])
      clearTimeout(w.timer)
      w.resolve(KINDS[packet.code] ?? 'other')
    })
    return {socket, waiting, free}
  })
  let turn = 0
  return {
    /** One Access-Request with a Message-Authenticator; the answer's kind, or 'timeout'. */
    ask(port: number, user: string, password: string, timeoutMs = 3000): Promise<RadiusAnswer['kind'] | 'timeout'> {
      const next = pool[turn++ % pool.length]
      const slot = next.free.length > 0 ? next : pool.find((p) => p.free.length > 0)
      if (!slot) return Promise.resolve('timeout') // more in flight than ids: counted as no answer
      const id = slot.free.shift()!
      const authenticator = randomBytes(16)
      const attributes: Attribute[] = [
        {type: ATTR.userName, value: text(user)},
        {type: ATTR.userPassword, value: hidePassword(password, key, authenticator)},
      ]
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          slot.waiting.delete(id)
          slot.free.push(id)
          resolve('timeout')
        }, timeoutMs)
        slot.waiting.set(id, {authenticator, resolve, timer})
        slot.socket.send(encodeRequest({id, authenticator, attributes, secret: key}), port, '127.0.0.1')
      })
    },
    close(): void {
      for (const p of pool) {
        for (const w of p.waiting.values()) clearTimeout(w.timer)
        p.socket.close()
      }
    },
  }
}
