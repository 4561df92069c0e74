import {createSocket, type RemoteInfo, type Socket} from 'node:dgram'
import {isIPv6} from 'node:net'
import type {Reason} from '../core/login.js'
import {checkUsername} from '../core/validate.js'
import type {AuditEvent} from '../store/audit.js'
import {type Client, matchClient} from './clients.js'
import {
  ATTR,
  type Attribute,
  checkMessageAuthenticator,
  CODE,
  decodePacket,
  encodeResponse,
  findAttribute,
  integer,
  type Packet,
  PacketError,
  PROMPT_NO_ECHO,
  revealPassword,
  text,
} from './packet.js'
import {StateBook} from './state.js'

/**
 * The RADIUS responder: one UDP socket, each Access-Request judged by the same login check as
 * `login:check --service ssh --method password`. A datagram goes through these phases, each of
 * which may drop it silently (RFC 2865 §3, RFC 3579 §3.2): known client → framing → Access-Request
 * → Message-Authenticator → duplicate → decision → signed answer. Requests are handled
 * concurrently: a failing one waits out its fail delay without holding anything else up.
 */

/** The login check (src/login/check.ts checkLogin bound to a store). */
export type Judge = (input: {user: string; code?: string}) => Promise<{allowed: boolean; reason: Reason}>

export interface ServerOptions {
  clients: Client[]
  judge: Judge
  audit: (event: Omit<AuditEvent, 'time' | 'actor'>) => void
  /** One line for the operator (stderr / journal). Never a password or a code. */
  log: (line: string) => void
  /** Log every decision, not only problems. */
  verbose?: boolean
  states?: StateBook
}

/** RFC 5080 §2.2.2: a retransmission gets the same answer; kept this long. */
const DUPLICATE_MS = 30_000
export const CHALLENGE_PROMPT = '2FA code: '

interface Answer {
  code: number
  attributes: Attribute[]
  user: string | null
  outcome: 'allowed' | 'denied' | 'challenge' | 'error'
  reason: string
}

export class RadiusServer {
  clients: Client[]
  private readonly states: StateBook
  private socket?: Socket
  private readonly inFlight = new Set<Promise<void>>()
  /** Duplicate detection: source + id + Request Authenticator → the answer (undefined while deciding). */
  private readonly recent = new Map<string, {at: number; answer?: Buffer}>()
  private readonly lastLogged = new Map<string, number>()
  private sweeper?: NodeJS.Timeout
  /** Counters for the operator and the tests. */
  readonly stats = {received: 0, dropped: 0, accepted: 0, rejected: 0, challenged: 0, duplicates: 0, errors: 0}

  constructor(private readonly opts: ServerOptions) {
    this.clients = opts.clients
    this.states = opts.states ?? new StateBook()
  }

  /** Binds `host:port`; resolves with the bound port (0 picks a free one). */
  listen(host: string, port: number): Promise<number> {
    const socket = createSocket({type: isIPv6(host) ? 'udp6' : 'udp4', reuseAddr: false})
    this.socket = socket
    socket.on('message', (msg, rinfo) => this.track(this.receive(msg, rinfo)))
    this.sweeper = setInterval(() => this.sweep(), 5000).unref()
    return new Promise((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(port, host, () => {
        socket.off('error', reject)
        socket.on('error', (error) => this.opts.log(`socket error: ${error.message}`))
        resolve(socket.address().port)
      })
    })
  }

  /** Stops reading, then waits for the requests already taken to be answered. */
  async close(): Promise<void> {
    clearInterval(this.sweeper)
    const socket = this.socket
    this.closing = true
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight])
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()))
    this.socket = undefined
  }

  private closing = false

  private track(work: Promise<void>): void {
    this.inFlight.add(work)
    void work.finally(() => this.inFlight.delete(work))
  }

  /** Logs a problem at most once a minute per kind (a flood of bad packets must not flood the log). */
  private note(kind: string, line: string): void {
    const now = Date.now()
    if (now - (this.lastLogged.get(kind) ?? 0) < 60_000) return
    this.lastLogged.set(kind, now)
    this.opts.log(line)
  }

  private drop(kind: string, line: string): void {
    this.stats.dropped++
    this.note(kind, `dropped: ${line}`)
  }

  private sweep(): void {
    const old = Date.now() - DUPLICATE_MS
    for (const [key, entry] of this.recent) if (entry.at < old && entry.answer) this.recent.delete(key)
  }

  /** Every datagram: never throws (a bad packet must not stop the responder). */
  async receive(msg: Buffer, rinfo: RemoteInfo): Promise<void> {
    try {
      await this.handle(msg, rinfo)
    } catch (error) {
      this.stats.errors++
      this.note('internal', `internal error on a request from ${rinfo.address}: ${(error as Error).message}`)
    }
  }

  private async handle(msg: Buffer, rinfo: RemoteInfo): Promise<void> {
    if (this.closing) return
    this.stats.received++
    const from = rinfo.address
    const client = matchClient(this.clients, from)
    if (!client) return this.drop(`unknown:${from}`, `request from ${from}, which is not in the clients file`)
    let packet: Packet
    try {
      packet = decodePacket(msg)
    } catch (error) {
      if (error instanceof PacketError) return this.drop(`bad:${from}`, `from ${from}: ${error.reason}`)
      throw error
    }
    if (packet.code !== CODE.accessRequest) return this.drop(`code:${from}`, `from ${from}: code ${packet.code} is not served (Access-Request only)`)
    try {
      const signed = checkMessageAuthenticator(packet, client.secret)
      if (!signed && client.requireMa) return this.drop(`noma:${from}`, `from ${from}: no Message-Authenticator, which the clients file requires (require-ma)`)
    } catch (error) {
      if (error instanceof PacketError) return this.drop(`ma:${from}`, `from ${from}: ${error.reason}`)
      throw error
    }

    const key = `${from}|${rinfo.port}|${packet.id}|${packet.authenticator.toString('hex')}`
    const seen = this.recent.get(key)
    if (seen) {
      this.stats.duplicates++
      if (seen.answer) await this.send(seen.answer, rinfo)
      return // still deciding: the answer goes out once
    }
    const entry: {at: number; answer?: Buffer} = {at: Date.now()}
    this.recent.set(key, entry)

    let answer: Answer
    try {
      answer = await this.decide(packet, client)
    } catch (error) {
      this.recent.delete(key)
      if (error instanceof PacketError) return this.drop(`bad:${from}`, `from ${from}: ${error.reason}`)
      throw error
    }
    // RFC 2865 §5.33: Proxy-State attributes go back unchanged and in order
    const proxyStates = packet.attributes.filter((a) => a.type === ATTR.proxyState)
    const datagram = encodeResponse(packet, answer.code, [...answer.attributes, ...proxyStates], client.secret)
    entry.answer = datagram
    entry.at = Date.now()
    this.count(answer.code)
    this.opts.audit({command: 'radius:serve', user: answer.user, outcome: answer.outcome, reason: answer.reason, client: from})
    if (this.opts.verbose || answer.outcome === 'error') this.opts.log(`${from} ${answer.user ?? '-'}: ${answer.outcome} (${answer.reason})`)
    await this.send(datagram, rinfo)
  }

  private count(code: number): void {
    if (code === CODE.accessAccept) this.stats.accepted++
    else if (code === CODE.accessChallenge) this.stats.challenged++
    else this.stats.rejected++
  }

  /** Resolves once the datagram has left (close() must not cut off an answer being sent). */
  private send(datagram: Buffer, rinfo: RemoteInfo): Promise<void> {
    const socket = this.socket
    if (!socket) return Promise.resolve()
    return new Promise((resolve) => socket.send(datagram, rinfo.port, rinfo.address, () => resolve()))
  }

  /** The decision for one Access-Request from a known client. */
  private async decide(packet: Packet, client: Client): Promise<Answer> {
    const reject = (user: string | null, reason: string, outcome: Answer['outcome'] = 'denied'): Answer => ({
      code: CODE.accessReject,
      attributes: [],
      user,
      outcome,
      reason,
    })
    const names = packet.attributes.filter((a) => a.type === ATTR.userName)
    if (names.length !== 1) return reject(null, names.length === 0 ? 'no_user_name' : 'several_user_names')
    let user: string
    try {
      user = checkUsername(names[0].value.toString('utf8'))
    } catch {
      return reject(null, 'bad_user_name')
    }
    if (findAttribute(packet, ATTR.chapPassword)) return reject(user, 'chap_not_supported')
    const hidden = findAttribute(packet, ATTR.userPassword)
    const state = findAttribute(packet, ATTR.state)

    // challenge mode, first round: the password is the Unix one the PAM stack has already
    // checked (or empty); it is never read. A user who needs a code is asked for it.
    if (client.mode === 'challenge' && !state) {
      const verdict = await this.judge(user, undefined)
      if (verdict.code !== undefined) return verdict
      const {allowed, reason} = verdict.result
      if (allowed) return {code: CODE.accessAccept, attributes: [], user, outcome: 'allowed', reason}
      if (reason !== 'code_required' && reason !== 'locked_out') return reject(user, reason) // a bypass code lifts a lockout: ask
      const attributes = [
        {type: ATTR.replyMessage, value: text(CHALLENGE_PROMPT)},
        {type: ATTR.state, value: this.states.issue(client.secret, user, client.network)},
        {type: ATTR.prompt, value: integer(PROMPT_NO_ECHO)},
      ]
      return {code: CODE.accessChallenge, attributes, user, outcome: 'challenge', reason}
    }
    if (state) {
      if (client.mode !== 'challenge') return reject(user, 'state_unexpected')
      const problem = this.states.take(state, client.secret, user, client.network)
      if (problem) return reject(user, problem)
    }
    // The code: the answer to the challenge, or (code mode) the User-Password itself.
    const code = hidden ? revealPassword(hidden, client.secret, packet.authenticator) : ''
    const verdict = await this.judge(user, code === '' ? undefined : code)
    if (verdict.code !== undefined) return verdict
    const {allowed, reason} = verdict.result
    return allowed ? {code: CODE.accessAccept, attributes: [], user, outcome: 'allowed', reason} : reject(user, reason)
  }

  /** The login check; a store that cannot be read or written means Access-Reject, never Accept. */
  private async judge(user: string, code: string | undefined): Promise<{code: undefined; result: {allowed: boolean; reason: Reason}} | Answer> {
    try {
      return {code: undefined, result: await this.opts.judge({user, code})}
    } catch (error) {
      this.note('store', `store problem, answering Access-Reject: ${(error as Error).message}`)
      return {code: CODE.accessReject, attributes: [], user, outcome: 'error', reason: 'store_unavailable'}
    }
  }
}
