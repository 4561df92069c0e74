import {existsSync} from 'node:fs'
import {userInfo} from 'node:os'
import type {PoolConfig} from 'pg'
import {GuardedClient} from './auth.js'
import {parse, pgpass} from './client.js'
import {type Endpoint, endpoints, type SessionAttrs, sessionAttrs, splitHosts} from './hosts.js'
import {usageError} from '../../core/errors.js'

/** libpq's sslmode values (plus node-postgres's no-verify). */
const SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify']

/**
 * The URL's user information split at the last `@` of the authority: a password may hold `@`,
 * `/`, `?` or `#` that were not percent-encoded, so the first of those is not where it ends.
 */
function userinfo(url: string): {scheme: string; user: string; password?: string; rest: string} | undefined {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)(.*)$/is.exec(url)
  if (!m) return undefined
  const at = m[2].lastIndexOf('@')
  if (at < 0) return undefined
  const info = m[2].slice(0, at)
  const colon = info.indexOf(':')
  return colon < 0
    ? {scheme: m[1], user: info, rest: m[2].slice(at)}
    : {scheme: m[1], user: info.slice(0, colon), password: info.slice(colon + 1), rest: m[2].slice(at)}
}

/** The URL as messages may show it: no part of a password (in the user information or `password=`). */
export function redactUrl(url: string): string {
  const u = userinfo(url)
  const shown = u?.password === undefined ? url : `${u.scheme}${u.user}:***${u.rest}`
  return shown.replace(/([?&]password=)[^&#]*/gi, '$1***')
}

/** A parser's message about `url`, or a plain one when it would show any part of the password. */
function scrub(message: string, url: string): string {
  const secrets = [userinfo(url)?.password, ...[...url.matchAll(/[?&]password=([^&#]*)/gi)].map((m) => m[1])].filter((p): p is string => Boolean(p))
  const safe = message.split(url).join(redactUrl(url))
  return secrets.some((p) => safe.includes(p) || safe.includes(decodeURIComponentSafe(p))) ? 'cannot be parsed' : safe
}

const decodeURIComponentSafe = (s: string): string => {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
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
  const bad = (detail: string) => usageError(`--store ${shown}: ${detail}`)
  const split = splitHosts(url) // db1,db2:5433: several hosts, tried in order (hosts.ts)
  let c: ReturnType<typeof parse>
  try {
    c = parse(split.url, {useLibpqCompat: true})
  } catch (error) {
    throw bad(`not a usable PostgreSQL URL (${scrub((error as Error).message.split('\n')[0], url)})`)
  }
  const sslmode = (c as {sslmode?: string}).sslmode
  if (sslmode && !SSLMODES.includes(sslmode)) throw bad(`sslmode=${scrub(sslmode, url)} is not one of ${SSLMODES.join(', ')}`)
  if (!c.database && !process.env.PGDATABASE) throw bad('name the database (postgresql://HOST/DATABASE)')
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
    Client: GuardedClient, // no password in clear or as MD5 without TLS (libpq's require_auth)
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

/**
 * What doctor says about how the connection is protected: nothing for the Unix socket or for TLS
 * that checks the server's certificate and name (sslmode=verify-full); else why that is weak.
 */
export function transportWeakness(url: string): string | undefined {
  const config = poolConfig(url, 1)
  const tcp = config.hosts.filter((h) => !String(h.host).startsWith('/')).map((h) => String(h.host))
  if (tcp.length === 0) return undefined
  const mode = (config as {sslmode?: string}).sslmode ?? process.env.PGSSLMODE
  if (mode === 'verify-full') return undefined
  return `TCP to ${tcp.join(', ')} without sslmode=verify-full${mode ? ` (sslmode=${mode})` : ''}: nothing proves the server that answers is the database${mode && mode !== 'disable' ? '' : ', and nothing is encrypted'} (a local user who binds its port while PostgreSQL is down answers in its place): use the Unix socket (postgresql:///DB?host=/run/postgresql) or sslmode=verify-full`
}
