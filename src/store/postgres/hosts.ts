// Several database hosts in one store URL, as libpq takes them, and failover between them.
// node-postgres connects to one host only and does not know target_session_attrs: this module
// reads the host list (`postgresql://db1,db2:5433/tfactl`, `?host=a,b&port=p1,p2`, socket
// directories), hands each new pooled connection the host to try, checks that the server it
// reached is the kind asked for (a writable primary by default), and walks the list again after
// an error. Like libpq's fe-connect.c: hosts are tried in the order given; with several ports,
// one per host; the session check uses the parameters a PostgreSQL 14+ server reports at startup
// (in_hot_standby, default_transaction_read_only) and asks with a query only an older server.
import type pg from 'pg'
import {usageError} from '../../core/errors.js'

/** One host to try: a name, an address or a Unix-socket directory, and its port. */
export interface Endpoint {
  host: string
  port: number
}

/**
 * The session kinds tfactl accepts (libpq's target_session_attrs). Every login writes, so
 * read-only, standby and prefer-standby are refused; without a value tfactl asks for read-write
 * (libpq's default is any).
 */
export const SESSION_ATTRS = ['read-write', 'primary', 'any'] as const
export type SessionAttrs = (typeof SESSION_ATTRS)[number]
const READ_ONLY_ATTRS = ['read-only', 'standby', 'prefer-standby']

/** The hosts of a URL's authority, and the URL with only the first one (what pg-connection-string can parse). */
export interface SplitUrl {
  url: string
  /** Each `host[:port]` of the authority, when there is more than one; undefined otherwise. */
  listed?: {host: string; port: string}[]
}

/**
 * Splits `scheme://[userinfo@]h1[:p1],h2[:p2]/…` into its hosts. An IPv6 address is bracketed
 * (`[::1]:5432`). A URL with one host (or none) comes back unchanged.
 */
export function splitHosts(url: string): SplitUrl {
  const m = /^(postgres(?:ql)?:\/\/)((?:[^@/?#]*@)?)([^/?#]*)(.*)$/is.exec(url)
  if (!m?.[3].includes(',')) return {url}
  const listed = m[3].split(',').map((entry) => {
    const e = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(entry)
    return {host: e ? e[1] : entry, port: e?.[2] ?? ''}
  })
  const first = listed[0]
  return {url: `${m[1]}${m[2]}${first.host}${first.port ? `:${first.port}` : ''}${m[4]}`, listed}
}

/**
 * The hosts to try, in order: the URL's authority list, or the `host=` parameter's list (which
 * wins, as in libpq), each with its port: one port for all, or one per host (libpq's rule).
 * An empty entry takes the default host or port. `shown` names the URL in errors (exit 2).
 */
export function endpoints(
  split: SplitUrl,
  parsed: {host?: string | null; port?: string | number | null},
  defaults: {host: string; port: number},
  shown: string,
): Endpoint[] {
  const queryHost = split.listed ? undefined : (parsed.host ?? undefined)
  const hosts = queryHost?.includes(',') ? queryHost.split(',') : split.listed ? split.listed.map((l) => l.host) : [queryHost ?? '']
  const perHost = split.listed && !queryHost ? split.listed.map((l) => l.port) : undefined
  const portList = perHost?.some((p) => p !== '') ? perHost : parsed.port ? String(parsed.port).split(',') : ['']
  if (portList.length !== 1 && portList.length !== hosts.length)
    throw usageError(`--store ${shown}: ${hosts.length} hosts but ${portList.length} ports (give one port, or one per host)`)
  return hosts.map((raw, i) => {
    const portText = (portList.length === 1 ? portList[0] : portList[i]).trim()
    if (portText !== '' && !/^\d{1,5}$/.test(portText)) throw usageError(`--store ${shown}: port ${portText} is not a number`)
    const host = decodeURIComponent(raw.trim()).replace(/^\[(.*)\]$/, '$1')
    return {host: host || defaults.host, port: portText ? Number(portText) : defaults.port}
  })
}

/** The URL's (or PGTARGETSESSIONATTRS') target_session_attrs; a value tfactl cannot use → exit 2. */
export function sessionAttrs(value: string | undefined, shown: string): SessionAttrs {
  const v = value ?? process.env.PGTARGETSESSIONATTRS
  if (v === undefined || v === '') return 'read-write'
  if ((SESSION_ATTRS as readonly string[]).includes(v)) return v as SessionAttrs
  if (READ_ONLY_ATTRS.includes(v))
    throw usageError(`--store ${shown}: target_session_attrs=${v} would reach a read-only server, and every login writes: use read-write or primary`)
  throw usageError(`--store ${shown}: target_session_attrs=${v} is not one of ${SESSION_ATTRS.join(', ')}`)
}

/** How messages name an endpoint: `host:port`, or the socket directory's file. */
export const endpointName = (e: Endpoint): string =>
  e.host.startsWith('/') ? `${e.host}/.s.PGSQL.${e.port}` : `${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`

/** The server a new connection reached is not the kind asked for (a standby, a read-only server). */
class WrongServer extends Error {
  readonly code = '08001' // libpq: "could not make a … connection" (a connection error: fail closed, try the next)
}

/** A pooled connection that knows which host it reached and what the server reported at startup. */
type HostClient = pg.ClientBase & {endpoint: Endpoint; reported: Map<string, string>}

/**
 * Failover over an ordered list of hosts for one pool. New connections go to the host that
 * answered last (the first, at the start); each is checked against `attrs` before the pool hands
 * it out; a connection that cannot be made or is the wrong kind moves on to the next host, once
 * around the list. After a connection error anywhere, the next new connection starts again from
 * the first host, as libpq does for each new connection. When a whole walk found nothing, the
 * connections asked for in the next HOLD_DOWN_MS fail at once with the same reasons: a responder
 * answering hundreds of logins a second during a failover does not open hundreds of connections.
 */
export class Failover {
  private next = 0
  /** After a walk of the whole list found nothing: until then, connections fail at once (a responder does not storm the hosts). */
  private heldUntil = 0
  private held?: string

  constructor(
    readonly hosts: Endpoint[],
    readonly attrs: SessionAttrs,
  ) {}

  /** A pool whose connections follow this list. */
  pool(Pool: typeof pg.Pool, Client: typeof pg.Client, config: pg.PoolConfig): pg.Pool {
    const hosts = this.hosts
    const pick = () => hosts[this.next]
    class Connection extends Client {
      readonly endpoint: Endpoint
      readonly reported = new Map<string, string>()
      constructor(options: pg.ClientConfig = {}) {
        const endpoint = pick()
        super({...options, host: endpoint.host, port: endpoint.port})
        this.endpoint = endpoint
        // The server may end a connection a caller holds between two queries (a crash, a
        // shutdown: FATAL 57P01). Without a listener that 'error' event would end the process
        // (radius:serve); with it, the caller's next query fails, the transaction fails closed
        // and the connection is released as broken. The pool adds its own listener while idle.
        this.on('error', () => {})
        const connection = (this as unknown as {connection: NodeJS.EventEmitter}).connection
        connection.on('parameterStatus', (m: {parameterName: string; parameterValue: string}) => this.reported.set(m.parameterName, m.parameterValue))
      }
    }
    return new Pool({...config, Client: Connection, onConnect: async (c: pg.ClientBase) => this.check(c as HostClient)})
  }

  /**
   * A connection from `pool` to a server of the kind asked for: the host that answered last
   * first, then each other host once. Fails with every host's reason when none will do.
   */
  async connect(pool: pg.Pool): Promise<pg.PoolClient> {
    if (this.held && Date.now() < this.heldUntil) throw unreachable(this.held)
    const reasons: string[] = []
    for (let tried = 0; tried < this.hosts.length; tried++) {
      const at = this.next
      try {
        const client = await pool.connect()
        this.held = undefined
        return client
      } catch (error) {
        const e = error as Error & {code?: string}
        if (this.hosts.length === 1 || BUSY.test(e.message)) throw error // one host; or every connection busy, not a host's fault
        reasons.push(`${endpointName(this.hosts[at])}: ${reason(e)}`)
        if (this.next === at) this.next = (at + 1) % this.hosts.length // others may have moved on already
      }
    }
    this.held = `no ${this.attrs === 'any' ? '' : `${this.attrs} `}server answered (${reasons.join('; ')})`
    this.heldUntil = Date.now() + HOLD_DOWN_MS
    throw unreachable(this.held)
  }

  /** A connection failed: the next new connection tries the list from the first host again. */
  reset(): void {
    this.next = 0
  }

  /** Is the server a new connection reached the kind asked for? (libpq's target_session_attrs check.) */
  private async check(c: HostClient): Promise<void> {
    if (this.attrs === 'any') return
    const standby = c.reported.get('in_hot_standby')
    if (this.attrs === 'primary') {
      const recovering = standby !== undefined ? standby === 'on' : (await c.query<{r: boolean}>('SELECT pg_catalog.pg_is_in_recovery() AS r')).rows[0].r
      if (recovering) throw new WrongServer('the server is a standby (in recovery)')
      return
    }
    const defaultReadOnly = c.reported.get('default_transaction_read_only')
    const readOnly =
      standby !== undefined && defaultReadOnly !== undefined
        ? standby === 'on' || defaultReadOnly === 'on'
        : (await c.query<{transaction_read_only: string}>('SHOW transaction_read_only')).rows[0].transaction_read_only === 'on'
    if (readOnly) throw new WrongServer(standby === 'on' ? 'the server is a standby (read-only)' : 'the server is read-only')
  }
}

/** How long a walk of the list that found no server stands for the next connections (they fail at once meanwhile). */
export const HOLD_DOWN_MS = 250

/** pg-pool's message when every connection is in use and none came free in time. */
const BUSY = /timeout exceeded when trying to connect/

function unreachable(message: string): Error {
  const e = new Error(message) as Error & {code: string}
  e.code = '08001'
  return e
}

/** One line for a failed attempt. */
function reason(e: Error & {code?: string}): string {
  const first = (e.message || String(e)).split('\n')[0]
  const cause = (e as {cause?: Error}).cause
  if (/connection timeout/i.test(first)) return 'connection timed out'
  return first || cause?.message || e.code || 'failed'
}
