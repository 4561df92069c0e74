// A throwaway PostgreSQL server for tests: initdb (trust auth) into a temp directory owned by
// the `postgres` user, pg_ctl on a free loopback port with its socket in that directory; stop()
// shuts it down and removes everything. Tests run as root, so the server runs as `postgres`.
import {execFileSync} from 'node:child_process'
import {chownSync, existsSync, readdirSync, rmSync} from 'node:fs'
import {createServer} from 'node:net'
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

export async function startPostgres(): Promise<PgServer> {
  const dir = tempDir('tfactl-pg-')
  const {uid, gid} = pgInfo()
  chownSync(dir, uid, gid)
  const data = join(dir, 'data')
  const port = await freePort()
  asPostgres(join(PG_BIN, 'initdb'), ['-A', 'trust', '-U', 'postgres', '-D', data, '--no-sync', '-E', 'UTF8', '--locale', 'C'])
  const server: PgServer = {
    dir,
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
        `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1 -c fsync=off`,
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
  server.start()
  return server
}
