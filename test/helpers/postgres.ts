// A throwaway PostgreSQL server for tests: initdb (trust auth) into a temp directory owned by
// the `postgres` user, pg_ctl on a free loopback port with its socket in that directory; stop()
// shuts it down and removes everything. Tests run as root, so the server runs as `postgres`.
import {execFile, execFileSync} from 'node:child_process'
import {appendFileSync, chownSync, existsSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {connect, createServer, type Server, type Socket} from 'node:net'
import {join} from 'node:path'
import {tempDir} from './cleanup.js'

/** The newest installed server's programs (Debian: /usr/lib/postgresql/VERSION/bin). */
export const PG_BIN =
  process.env.TFACTL_PG_BIN ??
  (existsSync('/usr/lib/postgresql')
    ? (readdirSync('/usr/lib/postgresql')
        .filter((v) => existsSync(join('/usr/lib/postgresql', v, 'bin', 'pg_ctl')))
        .sort((a, b) => Number(b) - Number(a))
        .map((v) => join('/usr/lib/postgresql', v, 'bin'))[0] ?? '/usr/lib/postgresql/15/bin')
    : '/usr/lib/postgresql/15/bin')

export interface PgServer {
  dir: string
  /** The data directory. */
  data: string
  port: number
  /** A database URL for a fresh database on this server (created by `database()`). */
  url(db: string): string
  database(name: string): Promise<string>
  start(): void
  stop(): void
  /** Runs a PostgreSQL client tool (psql, pg_dump…) against this server as `postgres`. */
  tool(name: string, args: string[]): string
  destroy(): void
}

/** A free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer()
    s.on('error', fail)
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address() as {port: number}
      s.close(() => done(port))
    })
  })
}

const pgInfo = () => {
  const out = execFileSync('id', ['-u', 'postgres'], {encoding: 'utf8'}).trim()
  const gid = execFileSync('id', ['-g', 'postgres'], {encoding: 'utf8'}).trim()
  return {uid: Number(out), gid: Number(gid)}
}

/** As `postgres`: runuser keeps it simple (tests run as root). */
const asPostgres = (cmd: string, args: string[], opts: {cwd?: string} = {}): string =>
  execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd ?? '/', timeout: 60_000})

/** A new directory for a server's files, owned by `postgres` (removed at the end of the test file at the latest). */
function serverDir(): string {
  const dir = tempDir('tfactl-pg-')
  const {uid, gid} = pgInfo()
  chownSync(dir, uid, gid)
  return dir
}

/**
 * A throwaway server: a new cluster (initdb), or, with `from`, a streaming standby of that
 * server (pg_basebackup -R). `fsync` off unless asked for: tests need speed, drills durability.
 */
export async function startPostgres(opts: {from?: PgServer; fsync?: boolean; conninfo?: string} = {}): Promise<PgServer> {
  const dir = serverDir()
  const data = join(dir, 'data')
  const port = await freePort()
  try {
    if (opts.from)
      asPostgres(join(PG_BIN, 'pg_basebackup'), [
        '-h',
        opts.from.dir,
        '-p',
        String(opts.from.port),
        '-U',
        'postgres',
        '-D',
        data,
        '-R',
        '-X',
        'stream',
        '-c',
        'fast',
        '--no-sync',
      ])
    if (opts.from && opts.conninfo) appendFileSync(join(data, 'postgresql.auto.conf'), `primary_conninfo = '${opts.conninfo}'\n`) // the last setting wins
    if (!opts.from) asPostgres(join(PG_BIN, 'initdb'), ['-A', 'trust', '-U', 'postgres', '-D', data, '--no-sync', '-E', 'UTF8', '--locale', 'C'])
  } catch (error) {
    rmSync(dir, {recursive: true, force: true})
    throw error
  }
  const server: PgServer = {
    dir,
    data,
    port,
    url: (db) => `postgresql://postgres@127.0.0.1:${port}/${db}`,
    async database(name) {
      server.tool('createdb', [name])
      return server.url(name)
    },
    start() {
      asPostgres(join(PG_BIN, 'pg_ctl'), [
        '-D',
        data,
        '-l',
        join(dir, 'log'),
        '-o',
        `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1 -c fsync=${opts.fsync ? 'on' : 'off'}`,
        '-w',
        'start',
      ])
    },
    stop() {
      asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop'])
    },
    tool: (name, args) => asPostgres(join(PG_BIN, name), ['-h', dir, '-p', String(port), '-U', 'postgres', ...args]),
    destroy() {
      try {
        server.stop()
      } catch {
        // already stopped
      }
      rmSync(dir, {recursive: true, force: true})
    },
  }
  try {
    server.start()
  } catch (error) {
    rmSync(dir, {recursive: true, force: true})
    throw error
  }
  return server
}

/** The server's processes (the postmaster and its children), from /proc. */
function clusterPids(postmaster: number): number[] {
  const pids = [postmaster]
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === postmaster) pids.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

/**
 * The server dies as in a power cut: SIGKILL to the postmaster and every backend at once (no
 * shutdown checkpoint, no goodbye to clients or standbys). Its SysV segment is removed after.
 */
export function crash(server: PgServer): void {
  const pidFile = join(server.data, 'postmaster.pid')
  if (!existsSync(pidFile)) return
  const lines = readFileSync(pidFile, 'utf8').split('\n')
  try {
    process.kill(Number(lines[0]), 'SIGSTOP') // no new backend while its children are listed
  } catch {
    rmSync(pidFile, {force: true}) // not running
    return
  }
  const pids = clusterPids(Number(lines[0]))
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  const shmid = (lines[6] ?? '').trim().split(/\s+/)[1]
  if (shmid) {
    try {
      execFileSync('ipcrm', ['-m', shmid], {stdio: 'ignore'})
    } catch {
      // removed already
    }
  }
  rmSync(pidFile, {force: true})
}

/** A primary and a streaming standby (pg_basebackup -R), synchronous or not; `destroy()` removes both. */
export interface PgPair {
  primary: PgServer
  standby: PgServer
  /** A URL naming both hosts, primary first (libpq style). */
  url(db: string, params?: string): string
  /** Waits until the standby streams (and, when synchronous, is the primary's sync standby). */
  streaming(): Promise<void>
  /** The primary dies (crash()); WAL still on its way to the standby (walDelayMs) is lost with it. */
  crashPrimary(): void
  /** Promotes the standby and waits for it to accept writes (without blocking the event loop: load goes on). */
  promote(): Promise<void>
  destroy(): void
}

/**
 * A primary with database `db`, and a standby of it (fsync off: a drill kills processes, not the
 * machine, so what was written survives in the page cache). With `sync`, the primary gets
 * synchronous_standby_names = '*' and synchronous_commit = on (set after the base backup, so that
 * the standby, once promoted, does not wait for a standby of its own that does not exist).
 */
export async function startPair(db: string, sync: boolean, opts: {walDelayMs?: number} = {}): Promise<PgPair> {
  const primary = await startPostgres()
  let standby: PgServer | undefined
  const link = opts.walDelayMs ? await slowLink(primary.port) : undefined
  try {
    primary.tool('createdb', [db])
    const conninfo = link ? `host=127.0.0.1 port=${link.port} user=postgres application_name=standby` : undefined
    standby = await startPostgres({from: primary, conninfo})
    primary.tool('psql', ['-qAt', '-d', 'postgres', '-c', `ALTER SYSTEM SET synchronous_standby_names = '${sync ? '*' : ''}'`])
    primary.tool('psql', ['-qAt', '-d', 'postgres', '-c', 'ALTER SYSTEM SET synchronous_commit = on'])
    primary.tool('psql', ['-qAt', '-d', 'postgres', '-c', 'SELECT pg_reload_conf()'])
  } catch (error) {
    standby?.destroy()
    primary.destroy()
    link?.close()
    throw error
  }
  const s = standby
  const pair: PgPair = {
    primary,
    standby: s,
    url: (name, params) => `postgresql://postgres@127.0.0.1:${primary.port},127.0.0.1:${s.port}/${name}${params ? `?${params}` : ''}`,
    async streaming() {
      const want = sync ? 'sync' : 'async'
      for (const started = Date.now(); Date.now() - started < 30_000; ) {
        const state = primary.tool('psql', ['-qAt', '-d', 'postgres', '-c', "SELECT state || ' ' || sync_state FROM pg_stat_replication"]).trim()
        if (state === `streaming ${want}`) {
          if (link && opts.walDelayMs) link.delayMs = opts.walDelayMs // from now on the WAL arrives late (the handshake did not)
          return
        }
        await new Promise((r) => setTimeout(r, 50))
      }
      throw new Error(`the standby does not stream (${want})`)
    },
    crashPrimary() {
      crash(primary)
      link?.close()
    },
    promote: () =>
      new Promise((done, fail) =>
        execFile('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), '-D', s.data, '-w', 'promote'], {cwd: '/', timeout: 60_000}, (error) =>
          error ? fail(error) : done(),
        ),
      ),
    destroy() {
      crash(primary) // a crashed primary has processes left only if the test failed before; stop() cannot end them
      link?.close()
      primary.destroy()
      s.destroy()
    },
  }
  return pair
}

/**
 * A TCP link to 127.0.0.1:`port` that hands what the server sends to the client `delayMs` late
 * (0 at first), as a slow network does: the standby's WAL stream through it runs that far behind
 * the primary. close() cuts it, and what was still on its way is lost.
 */
async function slowLink(port: number): Promise<{port: number; delayMs: number; close(): void}> {
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1')
    for (const sock of [client, upstream]) {
      sockets.add(sock)
      sock.on('error', () => {})
      sock.on('close', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.on('data', (chunk) => upstream.write(chunk))
    upstream.on('data', (chunk) => {
      if (link.delayMs === 0 && timers.size === 0) return void client.write(chunk)
      const t = setTimeout(() => {
        timers.delete(t)
        client.write(chunk)
      }, link.delayMs)
      timers.add(t)
    })
  })
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  const link = {
    port: (server.address() as {port: number}).port,
    delayMs: 0,
    close() {
      for (const t of timers) clearTimeout(t)
      for (const sock of sockets) sock.destroy()
      server.close()
    },
  }
  return link
}
