import {createSocket, type RemoteInfo, type Socket} from 'node:dgram'
import {isIPv6} from 'node:net'
import type {Reason, Service} from '../core/login.js'
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
  HEADER_LENGTH,
  integer,
  MAX_LENGTH,
  type Packet,
  PacketError,
  PROMPT_NO_ECHO,
  text,
} from './packet.js'
import {readUdpTables, type UdpTables} from '../os/sockets.js'
import {isLocalAddress, localSenderIsRoot} from './peer.js'
import {provenPassword} from './proof.js'
import {STATE_LENGTH, StateBook} from './state.js'

/**
 * The RADIUS responder: one UDP socket, each Access-Request judged by the same login check as
 * `login:check --method password` (challenge clients: `--service ssh`; code clients: `--service
 * ui`, then the client's own rule, codeClientAllows). A datagram goes through these phases, each
 * of which may drop it silently (RFC 2865 §3, RFC 3579 §3.2): known client → framing →
 * Access-Request (or Status-Server: a signed one gets a bare Access-Accept once its sender passes
 * the local-sender rule) → Message-Authenticator → a local sender is root → proof of the shared
 * secret (src/radius/proof.ts) → room for the answer → duplicate → decision → signed answer. Nothing
 * before the proof writes anything but a rate-limited line to the operator's log. Requests are
 * handled concurrently: a failing one waits out its fail delay without holding anything else up.
 */

/** The login check (src/login/check.ts checkLogin bound to a store). */
export type Judge = (input: {user: string; code?: string; service: Service}) => Promise<{allowed: boolean; reason: Reason}>

export interface ServerOptions {
  clients: Client[]
  judge: Judge
  audit: (event: Omit<AuditEvent, 'time' | 'actor'>) => void
  /** One line for the operator (stderr / journal). Never a password or a code. */
  log: (line: string) => void
  /** Log every decision, not only problems. */
  verbose?: boolean
  states?: StateBook
  /** The kernel's UDP socket tables (who owns a local sender's socket); /proc/net/udp{,6} by default. */
  udpTables?: () => Promise<UdpTables>
  /** Answers remembered for retransmissions, at most (default MAX_REMEMBERED). */
  maxRemembered?: number
  /**
   * Hears every request's fate, for metrics: the client's network as the clients file writes it
   * ('-' for a sender in no client's network), the outcome and reason, the seconds from receipt to
   * the answer (0 for drops). Never a user name, a password or a secret.
   */
  observe?: (event: Observation) => void
}

export interface Observation {
  client: string
  outcome: 'allowed' | 'denied' | 'challenge' | 'error' | 'status' | 'dropped' | 'duplicate'
  reason: string
  seconds: number
}

/** RFC 5080 §2.2.2: a retransmission gets the same answer; kept this long. */
const DUPLICATE_MS = 30_000
/** At most this many answers are remembered (about 350 octets each): a flood evicts the oldest. */
export const MAX_REMEMBERED = 65_536
export const CHALLENGE_PROMPT = '2FA code: '
/** The largest answers before Proxy-State: header and Message-Authenticator, plus Reply-Message, State and Prompt for a challenge. */
const LARGEST_ANSWER = HEADER_LENGTH + 18
const LARGEST_CHALLENGE = LARGEST_ANSWER + 2 + Buffer.byteLength(CHALLENGE_PROMPT) + 2 + STATE_LENGTH + 6

/** Reasons that mean a code was checked and taken: the only ones that let a user in through a code client by themselves. */
const CODE_CHECKED: ReadonlySet<Reason> = new Set<Reason>(['code_accepted', 'recovery_code_accepted', 'bypass_accepted'])

/**
 * A code client's own rule on top of the login decision. Its password is the code, so a user the
 * decision lets in without one (no secret, 2FA off) would get in with any password: refused,
 * unless the client's line says `allow-no-secret` (a VPN that checks a password of its own).
 */
export const codeClientAllows = (decision: {allowed: boolean; reason: Reason}, client: Pick<Client, 'allowNoSecret'>): boolean =>
  decision.allowed && (CODE_CHECKED.has(decision.reason) || client.allowNoSecret)

/** What is remembered of a request for its retransmissions. */
interface Remembered {
  at: number
  authenticator: Buffer
  answer?: Buffer
}

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
  /**
   * Duplicate detection (RFC 5080 §2.2.2), as FreeRADIUS keeps it: source address, port and id →
   * the request's authenticator and its answer (undefined while deciding). The same authenticator
   * again is a retransmission; another one is a new request on a reused id, which replaces the
   * entry (the client has given up on the old one), so a long-lived client socket holds at most
   * 256 entries however many requests it sends.
   */
  private readonly recent = new Map<string, Remembered>()
  private readonly lastLogged = new Map<string, number>()
  private sweeper?: NodeJS.Timeout
  /** Counters for the operator and the tests. */
  readonly stats = {received: 0, dropped: 0, accepted: 0, rejected: 0, challenged: 0, duplicates: 0, errors: 0, status: 0}

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

  /** Requests waiting for a read of the socket tables that starts after they arrived. */
  private tableWaiters: ((tables: UdpTables) => void)[] = []
  private readingTables = false

  /**
   * The socket tables as read after this call: a socket that sent a datagram already received is
   * in them unless it has been closed since. One read at a time serves every request that was
   * waiting when it started (every datagram of the same turn of the event loop), so a burst of
   * local requests costs a few reads, not one each.
   */
  private tablesAfterNow(): Promise<UdpTables> {
    return new Promise((resolve) => {
      this.tableWaiters.push(resolve)
      if (!this.readingTables) void this.readTables()
    })
  }

  private async readTables(): Promise<void> {
    this.readingTables = true
    try {
      while (this.tableWaiters.length > 0) {
        await new Promise<void>((resolve) => setImmediate(resolve)) // the datagrams of this turn of the event loop share one read
        const waiting = this.tableWaiters
        this.tableWaiters = []
        const tables = await (this.opts.udpTables ?? readUdpTables)().catch(() => ({udp: '', udp6: ''}))
        for (const resolve of waiting) resolve(tables)
      }
    } finally {
      this.readingTables = false
    }
  }

  /** How many answers are remembered for retransmissions (and decisions in progress). */
  get remembered(): number {
    return this.recent.size
  }

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

  private drop(kind: string, line: string, client?: Client): void {
    this.stats.dropped++
    this.opts.observe?.({client: client?.network ?? '-', outcome: 'dropped', reason: kind, seconds: 0})
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
    const started = performance.now()
    const from = rinfo.address
    // Drops are logged once a minute per kind, never per address: spoofed sources must not grow a table.
    const client = matchClient(this.clients, from)
    if (!client) return this.drop('unknown', `request from ${from}, which is not in the clients file`)
    let packet: Packet
    try {
      packet = decodePacket(msg)
    } catch (error) {
      if (error instanceof PacketError) return this.drop('bad', `from ${from}: ${error.reason}`, client)
      throw error
    }
    const status = packet.code === CODE.statusServer
    if (packet.code !== CODE.accessRequest && !status)
      return this.drop('code', `from ${from}: code ${packet.code} is not served (Access-Request and Status-Server only)`, client)
    let signed: boolean
    try {
      signed = checkMessageAuthenticator(packet, client.secret)
      if (!signed && (client.requireMa || status))
        return this.drop(
          'noma',
          `from ${from}: no Message-Authenticator, which ${status ? 'Status-Server needs (RFC 5997 §3)' : 'the clients file requires (require-ma)'}`,
          client,
        )
    } catch (error) {
      if (error instanceof PacketError) return this.drop('ma', `from ${from}: ${error.reason}`, client)
      throw error
    }
    if (isLocalAddress(from) && !localSenderIsRoot(await this.tablesAfterNow(), from, rinfo.port))
      return this.drop('local', `from ${from} port ${rinfo.port}: a local socket that is not root's (only root's are served from this host)`, client)
    if (status) return this.answerStatus(packet, client, rinfo)
    const password = this.proof(packet, client, signed)
    if (typeof password === 'object') return this.drop('unproven', `from ${from}: ${password.problem}, so it proves no shared secret`, client)
    // RFC 2865 §5.33: Proxy-State attributes go back unchanged and in order; an answer that
    // could not hold them (4096 octets at most) is never decided.
    const proxyStates = packet.attributes.filter((a) => a.type === ATTR.proxyState)
    const proxyLength = proxyStates.reduce((sum, a) => sum + 2 + a.value.length, 0)
    const mayChallenge = client.mode === 'challenge' && !findAttribute(packet, ATTR.state)
    if ((mayChallenge ? LARGEST_CHALLENGE : LARGEST_ANSWER) + proxyLength > MAX_LENGTH)
      return this.drop('big', `from ${from}: ${proxyLength} octets of Proxy-State leave no room for an answer`, client)

    const key = `${from}|${rinfo.port}|${packet.id}`
    const seen = this.recent.get(key)
    if (seen?.authenticator.equals(packet.authenticator)) {
      this.stats.duplicates++
      this.opts.observe?.({client: client.network, outcome: 'duplicate', reason: 'retransmission', seconds: 0})
      if (seen.answer) await this.send(seen.answer, rinfo)
      return // still deciding: the answer goes out once
    }
    const entry: Remembered = {at: Date.now(), authenticator: Buffer.from(packet.authenticator)} // a copy: not the whole datagram kept
    if (seen)
      this.recent.delete(key) // a new request on a reused id: the newest entry, at the end
    else if (this.recent.size >= (this.opts.maxRemembered ?? MAX_REMEMBERED)) this.recent.delete(this.recent.keys().next().value!)
    this.recent.set(key, entry)
    try {
      let answer: Answer
      try {
        answer = await this.decide(packet, client, password)
      } catch (error) {
        if (error instanceof PacketError) return this.drop('bad', `from ${from}: ${error.reason}`, client)
        throw error
      }
      const datagram = encodeResponse(packet, answer.code, [...answer.attributes, ...proxyStates], client.secret)
      entry.answer = datagram
      entry.at = Date.now()
      this.count(answer.code)
      this.opts.observe?.({client: client.network, outcome: answer.outcome, reason: answer.reason, seconds: (performance.now() - started) / 1000})
      this.opts.audit({command: 'radius:serve', user: answer.user, outcome: answer.outcome, reason: answer.reason, client: from})
      if (this.opts.verbose || answer.outcome === 'error') this.opts.log(`${from} ${answer.user ?? '-'}: ${answer.outcome} (${answer.reason})`)
      await this.send(datagram, rinfo)
    } finally {
      if (!entry.answer && this.recent.get(key) === entry) this.recent.delete(key) // no answer: nothing to repeat
    }
  }

  /**
   * RFC 5997: a signed Status-Server on an authentication port is answered with a bare, signed
   * Access-Accept — it says the responder is up and the client knows the secret, nothing about any
   * user, and never reaches the store. Not remembered as a duplicate (each probe is answered anew),
   * not audited (no login); counted.
   */
  private async answerStatus(packet: Packet, client: Client, rinfo: RemoteInfo): Promise<void> {
    this.stats.status++
    this.opts.observe?.({client: client.network, outcome: 'status', reason: 'status_server', seconds: 0})
    await this.send(encodeResponse(packet, CODE.accessAccept, [], client.secret), rinfo)
  }

  /**
   * The User-Password under the client's secret (undefined: none sent), or why the request proves
   * nothing. Challenge mode, first round: the Unix password, any text; else a code. A request
   * without a Message-Authenticator must carry a User-Password; any User-Password must reveal its
   * shape (src/radius/proof.ts).
   */
  private proof(packet: Packet, client: Client, signed: boolean): string | undefined | {problem: string} {
    const passwords = packet.attributes.filter((a) => a.type === ATTR.userPassword)
    if (passwords.length > 1) return {problem: 'several User-Passwords'}
    if (passwords.length === 0) return signed ? undefined : {problem: 'no User-Password and no Message-Authenticator'}
    const shape = client.mode === 'challenge' && !findAttribute(packet, ATTR.state) ? 'text' : 'code'
    const password = provenPassword(passwords[0].value, client.secret, packet.authenticator, shape)
    return password ?? {problem: `its User-Password does not reveal ${shape === 'text' ? 'text' : 'a code'} under the shared secret`}
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

  /** The decision for one Access-Request from a known client that proved the shared secret. */
  private async decide(packet: Packet, client: Client, password: string | undefined): Promise<Answer> {
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
    const state = findAttribute(packet, ATTR.state)

    // challenge mode, first round: the password is the Unix one the PAM stack has already
    // checked (or empty); it is never read. A user who needs a code is asked for it.
    if (client.mode === 'challenge' && !state) {
      const verdict = await this.judge(user, undefined, 'ssh')
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
    // The code: the answer to the challenge (an SSH login), or (code mode) the User-Password
    // itself, judged without the SSH switch and then by the client's own rule.
    const challenged = client.mode === 'challenge'
    const verdict = await this.judge(user, password === '' ? undefined : password, challenged ? 'ssh' : 'ui')
    if (verdict.code !== undefined) return verdict
    const {reason} = verdict.result
    const allowed = challenged ? verdict.result.allowed : codeClientAllows(verdict.result, client)
    return allowed ? {code: CODE.accessAccept, attributes: [], user, outcome: 'allowed', reason} : reject(user, reason)
  }

  /** The login check; a store that cannot be read or written means Access-Reject, never Accept. */
  private async judge(
    user: string,
    code: string | undefined,
    service: Service,
  ): Promise<{code: undefined; result: {allowed: boolean; reason: Reason}} | Answer> {
    try {
      return {code: undefined, result: await this.opts.judge({user, code, service})}
    } catch (error) {
      this.note('store', `store problem, answering Access-Reject: ${(error as Error).message}`)
      return {code: CODE.accessReject, attributes: [], user, outcome: 'error', reason: 'store_unavailable'}
    }
  }
}
