import {existsSync} from 'node:fs'
import {userInfo} from 'node:os'
import type {PoolConfig} from 'pg'
import {parse, pgpass} from './client.js'
import {type Endpoint, endpoints, type SessionAttrs, sessionAttrs, splitHosts} from './hosts.js'
import {usageError} from '../../core/errors.js'

/** libpq's sslmode values (plus node-postgres's no-verify). */
const SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify']

/** The URL as messages may show it: any password replaced by ***. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/?#]*):[^@/?#]*@/i, '$1:***@').replace(/([?&]password=)[^&#]*/gi, '$1***')
}

/** Connection defaults: fail within 10 s when the server does not answer; never wait forever on a lock. */
export const CONNECT_TIMEOUT_MS = 5000
export const STATEMENT_TIMEOUT_MS = 8000

/**
 * A libpq-style URL (`postgresql://user@host:port/db?sslmode=…`, `postgresql:///db?host=/run/postgresql`)
 * as node-postgres options, with libpq's meaning of sslmode. The password comes from the URL,
 * else PGPASSWORD, else ~/.pgpass (PGPASSFILE), looked up only when the server asks for one.
 * A URL that cannot be used → exit 2 naming it.
 */
export function poolConfig(url: string, max: number): PoolConfig & {hosts: Endpoint[]; attrs: SessionAttrs} {
  const shown = redactUrl(url)
  const split = splitHosts(url) // db1,db2:5433: several hosts, tried in order (hosts.ts)
  let c: ReturnType<typeof parse>
  try {
    c = parse(split.url, {useLibpqCompat: true})
  } catch (error) {
    throw usageError(`--store ${shown}: not a usable PostgreSQL URL (${(error as Error).message.split('\n')[0]})`)
  }
  const sslmode = (c as {sslmode?: string}).sslmode
  if (sslmode && !SSLMODES.includes(sslmode)) throw usageError(`--store ${shown}: sslmode=${sslmode} is not one of ${SSLMODES.join(', ')}`)
  if (!c.database && !process.env.PGDATABASE) throw usageError(`--store ${shown}: name the database (postgresql://HOST/DATABASE)`)
  // libpq's default is the local socket directory; node-postgres's would be localhost
  const hosts = endpoints(
    split,
    {host: c.host || process.env.PGHOST, port: c.port || process.env.PGPORT},
    {host: existsSync('/run/postgresql') ? '/run/postgresql' : 'localhost', port: 5432},
    shown,
  )
  const attrs = sessionAttrs((c as {target_session_attrs?: string}).target_session_attrs, shown)
  const {host, port} = hosts[0]
  const user = c.user || process.env.PGUSER || userInfo().username
  const database = c.database || process.env.PGDATABASE
  // the host a connection reached (one of several) names the ~/.pgpass line
  const fromPgpass = (reached?: {host?: string; port?: number}) =>
    new Promise<string>((done, fail) =>
      pgpass({host: reached?.host ?? host, port: reached?.port ?? port, database: database ?? undefined, user}, (found) =>
        found === undefined ? fail(new Error(`the server wants a password for ${user}: set PGPASSWORD or add it to ~/.pgpass (PGPASSFILE)`)) : done(found),
      ),
    )
  const password = c.password || process.env.PGPASSWORD
  return {
    ...(c as PoolConfig),
    host,
    port,
    user,
    database: database ?? undefined,
    password: password || fromPgpass,
    hosts,
    attrs,
    max,
    allowExitOnIdle: true,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    query_timeout: STATEMENT_TIMEOUT_MS + 1000,
    application_name: 'tfactl',
  }
}
