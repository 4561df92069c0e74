import {hostname} from 'node:os'
import {dirname} from 'node:path'
import type pg from 'pg'
import {pg as client} from './client.js'
import {storeError, TfaError} from '../../core/errors.js'
import type {Doc, Settings, StatusSummary, UserRecord} from '../../core/model.js'
import type {AuditEvent, ChangeAudit} from '../audit.js'
import {auditedUsers, type ChangeSet, changeSet, noMirror, projectUpdate} from '../change.js'
import {
  type AuditedChanges,
  type AuditRecord,
  auditedMore,
  type OpenOptions,
  type Outcome,
  type Responder,
  type StoreBackend,
  type StoreCheck,
  type StoreFinding,
} from '../backend.js'
import {DEFAULT_KEY_FILE} from '../config.js'
import {checkPrivateFile, ensureDir} from '../../os/files.js'
import {KeyFiles} from '../keys.js'
import {batchedAudit, batchedLogins, type LoginOutcome, type PendingLogin} from '../responder.js'
import {decodeParts, secretTag} from '../sealed.js'
import {encryptSecret} from '../secrets.js'
import {GuardedClient, INSECURE_AUTH} from './auth.js'
import {poolConfig, redactUrl, transportWeakness} from './connect.js'
import {type Endpoint, endpointName, Failover} from './hosts.js'
import {macMatches, rowMac, rowMacMatches, settingsMac} from './mac.js'
import {replicationFindings} from './replication.js'
import {CREATE_USERS_INDEX, LOCK_UPDATE, migrate, SCHEMA_VERSION, USERS_INDEX} from './schema.js'

type Client = pg.PoolClient

/** The settings row, read at the start of every transaction. */
interface Head {
  settings: string
  keyId: string | null
  /** The settings' authentication by the key (see mac.ts); null before any key holder wrote it. */
  mac: string | null
  schema: number
  /** Whether the users index (schema.ts USERS_INDEX) is there. */
  indexed: boolean
}

interface HeadRow {
  settings: string
  key_id: string | null
  mac: string | null
  schema: number | null
  indexed: boolean
}

interface Row {
  name: string
  rev: string
  data: string
  /** The row's authentication by the key (mac.ts rowMac); null when written without a key. */
  mac: string | null
}

/** The key that authenticates what is written, with its id. */
interface MacKey {
  id: string
  key: Buffer
}

/** Another writer changed a row between our read and our write: the transaction starts over. */
class Conflict extends Error {}

const ROW = 'name, rev::text AS rev, data::text AS data, mac'
const READ_ONLY = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'
/** Rows per batch when every user is read in turn (user:list). */
const USER_BATCH = 2000
/** Rows per statement when many are written (a bulk enrolment). */
const WRITE_BATCH = 5000

/**
 * What the database store fetched, counted so tests can tell "one user's row" from "every row"
 * without timing anything (test/unit/scale-work-postgres.test.ts).
 */
export const pgWork = {rowsRead: 0}

const HEAD_FIELDS = `settings::text AS settings, key_id, mac, (SELECT max(version) FROM tfactl_schema) AS schema, to_regclass('${USERS_INDEX}') IS NOT NULL AS indexed`
const HEAD = `SELECT ${HEAD_FIELDS} FROM tfactl_settings WHERE id = 1`
/**
 * The settings row and the counts of twofactor:status in one statement (one snapshot, one round
 * trip, no explicit transaction): every row is a user, and those without a secret come from the
 * users index when it is there (a few index entries) instead of from every row's JSON. No
 * parallel workers (for this statement only): starting two to count a table of users cost more
 * than the count (30–65 ms against 15–23 ms at 100 000 rows not yet vacuumed, on two cores).
 */
const SUMMARY = `SET LOCAL max_parallel_workers_per_gather = 0; SELECT ${HEAD_FIELDS}, (SELECT count(*) FROM tfactl_users)::text AS total, (SELECT count(*) FROM tfactl_users WHERE data->>'secret' IS NULL)::text AS unset FROM tfactl_settings WHERE id = 1`

/** Logins in one batch at most (their rows read and written in one statement each). */
const MAX_LOGIN_BATCH = 256

/** A login's whole time, connection included (statement timeout, a rollback: all within it). */
export const LOGIN_BOUND_MS = 8500

/** A PostgreSQL error (SQLSTATE): the server answered, so the connection is still usable. */
const fromServer = (code: string | undefined): boolean => typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)

/** Closes a connection under a query that does not answer: the query fails at once (the server rolls back). */
const hangUp = (c: Client): void => {
  c.on('error', () => {}) // the client reports the closed connection as an event too: the waiting query's failure says it
  ;(c as unknown as {connection?: {stream?: {destroy(): void}}}).connection?.stream?.destroy()
}

/** A COMMIT that no synchronous standby confirmed: perhaps kept on the primary alone, so not done. */
class Unconfirmed extends Error {}

/** A commit takes milliseconds; one that waits longer waits for a synchronous standby that is not there. */
const COMMIT_TIMEOUT_MS = 5000

/** PostgreSQL error codes that mean "try again" (serialization failure, deadlock, unique violation). */
const RETRY = new Set(['40001', '40P01', '23505'])
const CONNECTION = new Set([
  'ECONNREFUSED',
  'ENOENT',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  '57P01',
  '57P03',
  '08006',
  '08001',
  '08004',
])

/**
 * The fleet store: one PostgreSQL database shared by many hosts. Each user is one row whose
 * `data` is the record the file store writes (secrets sealed with the key file, bound to the
 * user's name), so validation and sealing are the file store's own. A login locks its user's row
 * (SELECT … FOR UPDATE) for the transaction that stores its effect, so checks of one user
 * serialise across hosts; whole-store updates serialise on an advisory lock and write only the
 * rows they changed, each guarded by the row's revision.
 */
export class PgStore implements StoreBackend {
  readonly description: string
  readonly localOathFile = false
  readonly oathSync = undefined
  /** What the last update changed (rows written, settings before and after). */
  lastChange: ChangeSet | undefined
  changeAudited: AuditedChanges | undefined
  private auditBy: ChangeAudit | undefined
  /** A database keeps no pam_oath users file: SSH codes go through the RADIUS responder. */
  private readonly noUsersFile = noMirror((change) => {
    if (change.after.oathFile) throw storeError(`${this.description}: a database store keeps no pam_oath users file (SSH codes go through tfactl radius:serve)`)
  })
  readonly keyFile: string
  private readonly keys: KeyFiles
  private pool?: pg.Pool
  private failover?: Failover
  private schemaChecked = false
  /** Set once a connection failed: the audit record of this run is not attempted (no second timeout). */
  private unreachable = false
  private readonly host = hostname()

  private readonly poolSize: number

  /** `poolSize` (or opts.poolSize): connections kept at most; a CLI run needs 2, a long-running responder more. */
  constructor(
    readonly spec: string,
    opts: OpenOptions = {},
    poolSize?: number,
  ) {
    this.poolSize = poolSize ?? opts.poolSize ?? 2
    this.description = redactUrl(spec)
    poolConfig(spec, this.poolSize) // a bad URL is a usage error now, before anything runs
    this.keyFile = opts.keyFile ?? DEFAULT_KEY_FILE
    this.keys = new KeyFiles(this.keyFile)
  }

  private getPool(): pg.Pool {
    if (!this.pool) {
      const config = poolConfig(this.spec, this.poolSize)
      this.failover = new Failover(config.hosts, config.attrs)
      // every connection refuses to give the password away without TLS (auth.ts), whichever host it reaches
      this.pool = this.failover.pool(client.Pool, GuardedClient, config)
      this.pool.on('error', () => {}) // an idle connection dropped: the next query reports it
    }
    return this.pool
  }

  /** A database failure as one line naming the store (exit 3); our own errors pass through. */
  private fail(error: unknown, what: string): TfaError {
    if (error instanceof TfaError) return error
    if (error instanceof Unconfirmed) {
      this.unreachable = true // the audit record would wait as long
      return storeError(
        `${this.description}: ${error.message} (is the synchronous standby down?); nothing is reported done, no login is allowed until a standby confirms`,
      )
    }
    const e = error as {code?: string; message?: string}
    const message = (e.message || String(error)).split('\n')[0]
    if (e.code === INSECURE_AUTH) return storeError(`${this.description}: ${message}`)
    if ((e.code && CONNECTION.has(e.code)) || /timeout|terminated|connect/i.test(message)) {
      this.unreachable = true
      this.failover?.reset() // the next connection walks the host list from the first
      return storeError(`${this.description}: database unreachable (${message}); no login is allowed until it answers`)
    }
    return storeError(`${this.description}: ${what} failed: ${message}`)
  }

  private async connect(): Promise<Client> {
    let client: Client
    try {
      const pool = this.getPool()
      client = await this.failover!.connect(pool)
    } catch (error) {
      this.unreachable = true
      throw this.fail(error, 'connecting')
    }
    return client
  }

  /**
   * Runs `fn` in a transaction on one connection; the schema is created or upgraded first when
   * missing. Retries when another writer got in between (row revision changed, a deadlock).
   */
  private async tx<T>(
    what: string,
    fn: (c: Client, begun: unknown) => Promise<T>,
    opts: {begin?: string | ((c: Client) => string) | null; boundMs?: number; commits?: boolean} = {},
  ): Promise<T> {
    const started = Date.now()
    const client = await this.connect()
    const transaction = opts.begin !== null // null: one statement, committed on its own
    let broken: Error | undefined
    // The bound covers everything after the connection too: when it passes, the connection is
    // closed under whatever query waits, which then fails at once (no second wait for a rollback).
    const bound = opts.boundMs ? setTimeout(() => hangUp(client), Math.max(0, opts.boundMs - (Date.now() - started))) : undefined
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const begin = typeof opts.begin === 'function' ? opts.begin(client) : (opts.begin ?? 'BEGIN')
          const begun = transaction ? await client.query(begin) : undefined
          const result = await fn(client, begun)
          if (transaction && !opts.commits) await this.commit(client) // commits: `fn` did (with its last write)
          this.unreachable = false // answered again (a long-running process records events again)
          return result
        } catch (error) {
          const code = (error as {code?: string}).code
          // A query that timed out or a connection that dropped: no ROLLBACK, which would wait
          // behind the stalled query as long again; the connection is dropped (the server rolls back).
          const dead = !(error instanceof TfaError) && !(error instanceof Conflict) && !fromServer(code)
          if (dead) broken = error as Error
          else if (transaction && !(error instanceof Unconfirmed)) await client.query('ROLLBACK').catch(() => {}) // an unconfirmed COMMIT may still wait
          if (dead) throw this.fail(error, what)
          // 42P01: no such table, 42703: no such column (a schema older than this tfactl)
          if ((code === '42P01' || code === '42703') && !this.schemaChecked) {
            try {
              await this.ensureSchema(client)
            } catch (failure) {
              if (!(failure instanceof TfaError)) broken = failure as Error
              throw this.fail(failure, 'creating the schema')
            }
            continue
          }
          if ((error instanceof Conflict || (code && RETRY.has(code))) && attempt < 20) continue
          if (!(error instanceof TfaError)) broken = error as Error
          throw this.fail(error, what)
        }
      }
    } finally {
      clearTimeout(bound)
      client.release(broken)
    }
  }

  /**
   * COMMIT, confirmed. A commit waits for the synchronous standby, if there is one; when the
   * standby is down that wait has no end (the statement timeout does not cover it) and, if
   * cancelled, PostgreSQL keeps the commit on the primary alone with a warning. What only the
   * primary holds may be lost in a failover, so neither is reported done: a login fails closed
   * within COMMIT_TIMEOUT_MS, and the connection, still waiting, is dropped.
   */
  private async commit(client: Client, write = ''): Promise<void> {
    let cancelled = false
    const notice = (n: {message?: string}) => {
      if (/synchronous replication/i.test(n.message ?? '')) cancelled = true
    }
    client.on('notice', notice)
    try {
      // `write` (writeInline) goes in the same round trip: when it fails, the COMMIT does not run
      await client.query({text: `${write}COMMIT`, query_timeout: COMMIT_TIMEOUT_MS} as pg.QueryConfig) // pg reads query_timeout per query; its types omit it
    } catch (error) {
      if (write && (error as {code?: string}).code === '22012') throw new Conflict() // writeInline's guard
      if (/query read timeout/i.test((error as Error).message)) {
        // with a write in the same round trip, the wait may be the write's as well as the standby's
        if (write)
          throw new Error(
            `timeout: the batch's write and its commit got no answer within ${COMMIT_TIMEOUT_MS / 1000} s (a stalled database, or a synchronous standby that is down)`,
          )
        throw new Unconfirmed(`the commit was not confirmed within ${COMMIT_TIMEOUT_MS / 1000} s`)
      }
      throw error
    } finally {
      client.off('notice', notice)
    }
    if (cancelled) throw new Unconfirmed('the wait for the synchronous standby was cancelled')
  }

  private async ensureSchema(client: Client): Promise<void> {
    const found = await migrate(client)
    if (found > SCHEMA_VERSION) throw this.newer(found)
    this.schemaChecked = true
  }

  private newer(version: number): TfaError {
    return storeError(
      `${this.description}: the schema is version ${version}, written by a newer tfactl (this one knows up to ${SCHEMA_VERSION}): upgrade tfactl on this host`,
    )
  }

  /** The settings row; creates or upgrades the schema when it is missing or older. */
  private async head(c: Client): Promise<Head> {
    return this.parseHead(await c.query<HeadRow>(HEAD))
  }

  private parseHead(r: pg.QueryResult<HeadRow>): Head {
    if (r.rows.length === 0) throw storeError(`${this.description}: the settings row is missing (tfactl_settings): restore it from a backup`)
    const schema = r.rows[0].schema ?? 0
    if (schema > SCHEMA_VERSION) throw this.newer(schema)
    if (schema < SCHEMA_VERSION) {
      const e = new Error('schema upgrade needed') as Error & {code: string}
      e.code = '42P01'
      throw e
    }
    this.schemaChecked = true
    return {settings: r.rows[0].settings, keyId: r.rows[0].key_id, mac: r.rows[0].mac, schema, indexed: r.rows[0].indexed}
  }

  /** A host whose key file is not the database's key may not read or write: exit 3, never a login. */
  private checkKey(keyId: string | null): void {
    if (keyId === null) return
    for (const retry of [false, true]) {
      if (retry) this.keys.forget() // the file may have been replaced since it was read (a rotation)
      if (this.keys.byId(keyId)) return
    }
    throw storeError(
      checkPrivateFile(this.keyFile)
        ? `${this.keyFile} is not the key of ${this.description} (its secrets are sealed with key id ${keyId}): copy the key file from a host that uses this database`
        : `${this.keyFile} is missing: ${this.description} seals its secrets with key id ${keyId}; copy the key file from a host that uses this database (--key-file, TFACTL_KEY_FILE)`,
    )
  }

  /**
   * Settings are the fleet's only when its key authenticated them (mac.ts). A host that holds a
   * key refuses settings its key did not authenticate — none at all (a database naming no key:
   * anyone who can answer at the database's address can serve one), or a MAC that does not
   * match (written by someone without the key) — with exit 3, never a login. `adopt`: a whole-
   * store update by a key holder may take over a database that names no key yet (first set-up);
   * it then writes the key id and the MAC. A host without any key trusts a database that names
   * none: nothing was set up yet, and the first change of settings or secret creates the key.
   */
  private authenticate(head: Head, doc: Doc, rows: Row[], adopt = false): void {
    if (head.keyId === null) {
      if (adopt || !this.keys.held()) return
      throw storeError(
        `${this.description} names no key, but this host holds ${this.keyFile}: its settings are not authenticated by the key, so they are not trusted (a new database: set it up from this host with tfactl twofactor:enable)`,
      )
    }
    const key = this.keys.byId(head.keyId)! // checkKey found it
    const row = rows.find((r) => !rowMacMatches(key, head.keyId!, r.name, r.data, r.mac))
    if (macMatches(key, head.keyId, doc.settings, head.mac) && !row) return
    if (row && row.mac !== null)
      throw storeError(
        `${this.description}: the row of user ${JSON.stringify(row.name)} was not written with the key ${this.keyFile} (changed by someone without it); refused: restore the row from a backup, or delete it (psql: DELETE FROM tfactl_users WHERE name = …) and enrol the user again`,
      )
    throw storeError(
      head.mac === null || row
        ? `${this.description}: its settings and users are not authenticated by the key (written by an older tfactl, or by someone without the key): check them with psql (SELECT settings FROM tfactl_settings), then run tfactl store:rotate-key on a host that holds the key`
        : `${this.description}: its settings were not written with the key ${this.keyFile} (changed by someone without it); refused: restore the row from a backup, or accept the settings as they are with tfactl store:rotate-key on a host that holds the key`,
    )
  }

  /** The rows as a store document, validated and opened by the records' reader (../sealed.ts), the file store's too. */
  private decode(head: Head, rows: Row[]): Doc {
    return decodeParts(
      head.settings,
      head.keyId,
      rows.map((r) => [r.name, r.data] as [string, string]),
      this.description,
      this.keys,
    )
  }

  /** The user rows: every one (`user` undefined), or one user's (locked until the transaction ends). */
  private async rows(c: Client, user?: string): Promise<Row[]> {
    const r =
      user === undefined
        ? await c.query<Row>(`SELECT ${ROW} FROM tfactl_users ORDER BY name`)
        : await c.query<Row>(`SELECT ${ROW} FROM tfactl_users WHERE name = $1 FOR UPDATE`, [user])
    pgWork.rowsRead += r.rows.length
    return r.rows
  }

  private async readAll(c: Client, adopt = false): Promise<{head: Head; rows: Row[]; doc: Doc}> {
    const head = await this.head(c)
    this.checkKey(head.keyId)
    const rows = await this.rows(c)
    const doc = this.decode(head, rows)
    this.authenticate(head, doc, rows, adopt)
    return {head, rows, doc}
  }

  async read(): Promise<Doc> {
    return this.tx('reading', async (c) => (await this.readAll(c)).doc, {begin: READ_ONLY})
  }

  /** The settings row alone, authenticated (user:secret:renew reads them before it asks for a code). */
  async settings(): Promise<Settings> {
    return this.tx('reading the settings', async (c) => (await this.headOnly(c)).doc.settings, {begin: READ_ONLY})
  }

  /** The settings row as a document without users, its key and authentication checked. */
  private async headOnly(c: Client, read?: pg.QueryResult<HeadRow>): Promise<{head: Head; doc: Doc}> {
    const head = read ? this.parseHead(read) : await this.head(c)
    this.checkKey(head.keyId)
    const doc = this.decode(head, [])
    this.authenticate(head, doc, [])
    return {head, doc}
  }

  /**
   * Settings and counts: the database counts the rows, none is fetched or opened (twofactor:status).
   * The counts are used only once the settings read with them are authenticated.
   */
  async summary(): Promise<StatusSummary> {
    return this.tx(
      'reading the summary',
      async (c) => {
        const [, r] = (await c.query(SUMMARY)) as unknown as [unknown, pg.QueryResult<HeadRow & {total: string; unset: string}>]
        const {doc} = await this.headOnly(c, r)
        // the categories of summaryOf(): every row is a user; configured ones have a secret
        const total = Number(r.rows[0].total)
        return {settings: doc.settings, total, configured: total - Number(r.rows[0].unset)}
      },
      {begin: null},
    )
  }

  /**
   * Every user in name order, USER_BATCH rows at a time from one snapshot: a batch is decoded
   * (validated, opened, authenticated) and handed to `fn`, then dropped, so memory does not grow
   * with the store.
   */
  async eachUser(fn: (batch: Array<[string, UserRecord]>) => void): Promise<void> {
    return this.tx(
      'reading the users',
      async (c) => {
        const {head} = await this.headOnly(c)
        for (let after = ''; ; ) {
          const r = await c.query<Row>(`SELECT ${ROW} FROM tfactl_users WHERE name > $1 ORDER BY name LIMIT ${USER_BATCH}`, [after])
          pgWork.rowsRead += r.rows.length
          if (r.rows.length > 0) {
            const doc = this.decode(head, r.rows)
            this.authenticate(head, doc, r.rows)
            fn([...doc.users])
          }
          if (r.rows.length < USER_BATCH) return
          after = r.rows.at(-1)!.name
        }
      },
      {begin: READ_ONLY},
    )
  }

  async update<T>(fn: (doc: Doc) => T | Promise<T>): Promise<T> {
    return this.change(undefined, fn)
  }

  /**
   * A change of one user: that user's row alone is read (and locked), and written when it
   * changed. A database that names no key yet takes the whole-store path (its first keyed write
   * authenticates every row).
   */
  async updateUser<T>(user: string, fn: (doc: Doc) => T | Promise<T>): Promise<T> {
    return this.change(user, fn)
  }

  /** Read-modify-write of every row (`user` undefined) or of one user's, under the update lock. */
  private async change<T>(user: string | undefined, fn: (doc: Doc) => T | Promise<T>): Promise<T> {
    let audited: {users: string[]; outcome: Outcome} | undefined
    const {result, change} = await this.tx('the update', async (c) => {
      audited = undefined // a transaction started over records its own lines
      await c.query(LOCK_UPDATE) // one writer of settings and records at a time, on every host
      const head = await this.head(c)
      this.checkKey(head.keyId)
      if (user === undefined && !head.indexed) await this.createIndex(c)
      const rows = await this.rows(c, head.keyId === null ? undefined : user)
      const doc = this.decode(head, rows)
      this.authenticate(head, doc, rows, true)
      this.keys.settle(head.keyId) // finishes or drops a key rotation a crash interrupted
      const before = snapshot(doc)
      const settingsBefore = {...doc.settings}
      const settings = JSON.stringify(doc.settings)
      let touched: string[] = []
      let committed: ChangeSet | undefined
      // the update sequence every backend runs (../change.ts); a database keeps no mirror
      const {result, change} = await projectUpdate(
        doc,
        this.noUsersFile,
        {mark: null, protect: []},
        {
          run: async () => fn(doc),
          change: () => {
            const after = snapshot(doc)
            touched = [...new Set([...before.keys(), ...after.keys()])].filter((name) => before.get(name)?.json !== after.get(name)?.json)
            if (user !== undefined) for (const name of touched) if (name !== user) throw new Error(`a change of ${user} also changed ${name}`) // a caller's bug, never written
            return (committed = changeSet(touched, settingsBefore, doc))
          },
          save: async () => {
            const changed = JSON.stringify(doc.settings) !== settings
            let keyId = head.keyId
            if (keyId === null && (changed || this.keys.held() || touched.length > 0)) {
              // the first write of settings or users: the key file is created (0600) now (or the one
              // this host holds is used), and the database names it
              ensureDir(dirname(this.keyFile))
              keyId = this.keys.current().id
            }
            const key = keyId === null ? undefined : {id: keyId, key: this.keys.byId(keyId)!}
            await this.write(c, rows, before, doc, key, key !== undefined && head.keyId === null) // adopted: every row authenticated
            if (key && (changed || key.id !== head.keyId)) {
              const mac = settingsMac(key.key, key.id, doc.settings)
              await c.query('UPDATE tfactl_settings SET settings = $1::jsonb, key_id = $2, mac = $3 WHERE id = 1', [JSON.stringify(doc.settings), key.id, mac])
            }
            // the change's audit lines, in its transaction: committed with it or rolled back with it
            const users = this.auditBy && auditedUsers(committed!)
            if (users) {
              audited = {users, outcome: this.auditBy!.outcome()}
              await this.insertEvents(c, this.auditBy!.command, users, audited.outcome)
            }
          },
        },
      )
      return {result, change}
    })
    this.lastChange = change // committed
    if (audited) this.changeAudited = auditedMore(this.changeAudited, audited.users, audited.outcome)
    return result
  }

  auditChanges(by: ChangeAudit): void {
    this.auditBy = by
  }

  /** One row per user (none: one row without a user), in one statement on `c`. */
  private async insertEvents(c: Client, command: string, users: Array<string | null>, outcome: Outcome): Promise<void> {
    await c.query(
      'INSERT INTO tfactl_audit (time, host, uid, sudo_user, command, "user", outcome, reason) SELECT now(), $1, $2, $3, $4, u, $6, $7 FROM unnest($5::text[]) AS u',
      [this.host, process.getuid?.() ?? -1, process.env.SUDO_USER || null, command, users.length > 0 ? users : [null], outcome.outcome, outcome.reason],
    )
  }

  /**
   * Creates the users index (schema.ts) of a database made before it, in a whole-store update
   * (which reads every row anyway). A role that may not (not the table's owner), or a build that
   * takes too long, leaves the database as it was: the update goes on without it.
   */
  private async createIndex(c: Client): Promise<void> {
    await c.query('SAVEPOINT tfactl_index')
    try {
      await c.query(CREATE_USERS_INDEX)
      await c.query('RELEASE SAVEPOINT tfactl_index')
    } catch (error) {
      if (!fromServer((error as {code?: string}).code)) throw error
      await c.query('ROLLBACK TO SAVEPOINT tfactl_index')
    }
  }

  /**
   * Writes the users `doc` changed: new rows inserted, changed rows updated and emptied rows
   * deleted, each only if its revision is still the one read (else Conflict: start over).
   * Unchanged secrets keep their sealed form; new ones are sealed with `sealKey()`.
   */
  private async write(c: Client, rows: Row[], before: Snapshot, doc: Doc, macKey: MacKey | undefined, reseal = false): Promise<void> {
    const {ins, upd, del} = await this.changes(rows, before, doc, macKey, reseal)
    const guarded = async (sql: string, columns: (string | null)[][]) => {
      // WRITE_BATCH rows per statement: each stays well inside the statement timeout (100 000 users at once did not)
      for (let from = 0; from < columns[0].length; from += WRITE_BATCH) {
        const r = await c.query(
          sql,
          columns.map((col) => col.slice(from, from + WRITE_BATCH)),
        )
        if (r.rowCount !== Math.min(WRITE_BATCH, columns[0].length - from)) throw new Conflict()
      }
    }
    await guarded('DELETE FROM tfactl_users u USING unnest($1::text[], $2::bigint[]) v(name, rev) WHERE u.name = v.name AND u.rev = v.rev', del)
    await guarded(
      'UPDATE tfactl_users u SET data = v.data::jsonb, mac = v.mac, rev = u.rev + 1 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) v(name, rev, data, mac) WHERE u.name = v.name AND u.rev = v.rev',
      upd,
    )
    await guarded(
      'INSERT INTO tfactl_users (name, data, mac) SELECT name, data::jsonb, mac FROM unnest($1::text[], $2::text[], $3::text[]) v(name, data, mac) ON CONFLICT (name) DO NOTHING',
      ins,
    )
  }

  /**
   * What write() writes, as one statement with its values inline (a few hundred rows at most: a
   * batch of logins), sent with the COMMIT in one round trip. Each part is guarded by the count
   * of rows it must touch: when one touched fewer (a revision changed, a row appeared), the
   * statement divides by zero, so the transaction aborts before its COMMIT runs (22012: Conflict).
   * Empty when nothing changed.
   */
  private async writeInline(c: Client, rows: Row[], before: Snapshot, doc: Doc, macKey: MacKey | undefined): Promise<string> {
    const {ins, upd, del} = await this.changes(rows, before, doc, macKey, false)
    const lit = (v: string | null) => (v === null ? 'NULL' : c.escapeLiteral(v))
    const values = (columns: (string | null)[][], types: string[]) =>
      columns[0].map((_, i) => `(${columns.map((col, k) => `${lit(col[i])}::${types[k]}`).join(', ')})`).join(', ')
    const parts: string[] = []
    const counts: string[] = []
    if (del[0].length > 0) {
      parts.push(
        `d AS (DELETE FROM tfactl_users u USING (VALUES ${values(del, ['text', 'bigint'])}) v(name, rev) WHERE u.name = v.name AND u.rev = v.rev RETURNING 1)`,
      )
      counts.push(`(SELECT count(*) FROM d) = ${del[0].length}`)
    }
    if (upd[0].length > 0) {
      parts.push(
        `u AS (UPDATE tfactl_users u SET data = v.data::jsonb, mac = v.mac, rev = u.rev + 1 FROM (VALUES ${values(upd, ['text', 'bigint', 'text', 'text'])}) v(name, rev, data, mac) WHERE u.name = v.name AND u.rev = v.rev RETURNING 1)`,
      )
      counts.push(`(SELECT count(*) FROM u) = ${upd[0].length}`)
    }
    if (ins[0].length > 0) {
      parts.push(
        `i AS (INSERT INTO tfactl_users (name, data, mac) SELECT name, data::jsonb, mac FROM (VALUES ${values(ins, ['text', 'text', 'text'])}) v(name, data, mac) ON CONFLICT (name) DO NOTHING RETURNING 1)`,
      )
      counts.push(`(SELECT count(*) FROM i) = ${ins[0].length}`)
    }
    if (parts.length === 0) return ''
    return `WITH ${parts.join(', ')} SELECT 1 / (CASE WHEN ${counts.join(' AND ')} THEN 1 ELSE 0 END); `
  }

  /** The users `doc` changed, as columns: deleted (name, rev), updated (name, rev, data, mac), inserted (name, data, mac). */
  private async changes(
    rows: Row[],
    before: Snapshot,
    doc: Doc,
    macKey: MacKey | undefined,
    reseal: boolean,
  ): Promise<{ins: (string | null)[][]; upd: (string | null)[][]; del: string[][]}> {
    const byName = new Map(rows.map((r) => [r.name, r]))
    const ins: [string[], string[], (string | null)[]] = [[], [], []]
    const upd: [string[], string[], string[], (string | null)[]] = [[], [], [], []]
    const del: [string[], string[]] = [[], []]
    for (const [name, record] of doc.users) {
      const json = JSON.stringify(record)
      const old = reseal ? undefined : before.get(name)
      if (old?.json === json) continue
      const row = byName.get(name)
      const oldSealed = row ? (JSON.parse(row.data) as {secret: string | null; pending: {secret: string} | null}) : undefined
      const seal = async (tag: string, secret: string | null, was: string | null | undefined, sealed: string | null | undefined): Promise<string | null> => {
        if (secret === null) return null
        if (secret === was && sealed) return sealed
        return encryptSecret(macKey?.key ?? this.noKey(), tag, secret)
      }
      const data = JSON.stringify({
        ...record,
        secret: await seal(secretTag(name), record.secret, old?.secret, oldSealed?.secret),
        pending: record.pending && {
          ...record.pending,
          secret: await seal(secretTag(name, true), record.pending.secret, old?.pending, oldSealed?.pending?.secret),
        },
      })
      const mac = macKey ? rowMac(macKey.key, macKey.id, name, data) : null
      if (row) {
        upd[0].push(name)
        upd[1].push(row.rev)
        upd[2].push(data)
        upd[3].push(mac)
      } else {
        ins[0].push(name)
        ins[1].push(data)
        ins[2].push(mac)
      }
    }
    for (const name of before.keys()) {
      if (doc.users.has(name)) continue
      del[0].push(name)
      del[1].push(byName.get(name)!.rev)
    }
    return {ins, upd, del}
  }

  /** What a login transaction's first round trip brought (BEGIN; HEAD; rows FOR UPDATE): the settings head, its key checked, and the locked rows. */
  private lockedRows(begun: unknown): {head: Head; rows: Row[]} {
    const [, headResult, r] = begun as [unknown, pg.QueryResult<HeadRow>, pg.QueryResult<Row>]
    pgWork.rowsRead += r.rows.length
    const head = this.parseHead(headResult)
    this.checkKey(head.keyId)
    return {head, rows: r.rows}
  }

  async login<T>(user: string, fn: (doc: Doc) => T): Promise<T> {
    // One round trip for the start: BEGIN, the settings row and the user's row, sent together
    // (the name is quoted by the client; usernames are validated before they get here anyway).
    // The user's row stays locked until this transaction commits its effect: every other check
    // of this user, on any host, waits for it and then sees the new state.
    const begin = (c: Client) => `BEGIN; ${HEAD}; SELECT ${ROW} FROM tfactl_users WHERE name = ${c.escapeLiteral(user)} FOR UPDATE`
    return this.tx(
      'the login check',
      async (c, begun) => {
        const {head, rows: lockedRows} = this.lockedRows(begun)
        const doc = this.decode(head, lockedRows)
        this.authenticate(head, doc, lockedRows)
        const before = snapshot(doc)
        const result = fn(doc)
        await this.write(c, lockedRows, before, doc, head.keyId === null ? undefined : {id: head.keyId, key: this.keys.byId(head.keyId)!})
        return result
      },
      {begin, boundMs: LOGIN_BOUND_MS},
    )
  }

  /**
   * Many logins in one transaction (the responder's group commit, batchedLogins): one round trip
   * for BEGIN, the settings row and every user's row of the batch, locked in name order (two
   * responders lock in the same order: no deadlock between them); each login decided in the
   * batch's order against the rows as the logins before it left them (the same user twice: the
   * second sees the first's effect); one round trip for every changed row and the COMMIT. The
   * outcomes are handed back only after the COMMIT; any database error fails the whole batch.
   * The settings are authenticated once a batch; a row that is not (or does not decode) fails
   * its own user's logins only.
   */
  async loginBatch(batch: PendingLogin[]): Promise<LoginOutcome[]> {
    const names = [...new Set(batch.map((l) => l.user))].sort()
    const begin = (c: Client) =>
      `BEGIN; ${HEAD}; SELECT ${ROW} FROM tfactl_users WHERE name = ANY(ARRAY[${names.map((n) => c.escapeLiteral(n)).join(', ')}]::text[]) ORDER BY name FOR UPDATE`
    const oldest = Math.min(...batch.map((l) => l.deadline))
    return this.tx(
      'the login check',
      async (c, begun) => {
        const {head, rows: lockedRows} = this.lockedRows(begun)
        const {doc, rows, refused} = this.decodeEach(head, lockedRows)
        const before = snapshot(doc)
        const ran = new Set<string>() // users a login of this batch already ran on
        const outcomes = batch.map((l): LoginOutcome => {
          const error = refused.get(l.user)
          if (error) return {error}
          const was = doc.users.get(l.user)
          // the record as the logins before this one left it: the snapshot's, unless one of them ran on it
          const kept = was && (ran.has(l.user) || !before.has(l.user) ? JSON.stringify(was) : before.get(l.user)!.json)
          ran.add(l.user)
          try {
            return {value: l.fn(doc)}
          } catch (failure) {
            // this login alone fails: its user's record goes back to what the logins before it left
            if (kept) doc.users.set(l.user, JSON.parse(kept))
            else doc.users.delete(l.user)
            return {error: failure}
          }
        })
        const key = head.keyId === null ? undefined : {id: head.keyId, key: this.keys.byId(head.keyId)!}
        await this.commit(c, await this.writeInline(c, rows, before, doc, key))
        return outcomes
      },
      {begin, boundMs: oldest - Date.now(), commits: true},
    )
  }

  /**
   * The batch's rows as one document, validated, opened and authenticated; when that fails, each
   * row on its own, so that a row that is not authenticated (or not valid) refuses its own user's
   * logins only. Settings that are not authenticated refuse the whole batch.
   */
  private decodeEach(head: Head, rows: Row[]): {doc: Doc; rows: Row[]; refused: Map<string, unknown>} {
    try {
      const doc = this.decode(head, rows)
      this.authenticate(head, doc, rows)
      return {doc, rows, refused: new Map()}
    } catch {
      this.authenticate(head, this.decode(head, []), []) // the settings: throws for all
      const good: Row[] = []
      const refused = new Map<string, unknown>()
      for (const row of rows)
        try {
          this.authenticate(head, this.decode(head, [row]), [row])
          good.push(row)
        } catch (error) {
          refused.set(row.name, error)
        }
      return {doc: this.decode(head, good), rows: good, refused}
    }
  }

  private noKey(): never {
    throw storeError(`${this.description}: a login cannot seal a new secret`)
  }

  async rotateKey(): Promise<{users: string[]; key: string}> {
    ensureDir(dirname(this.keyFile))
    let newId: string | null = null
    try {
      const users = await this.tx('the key rotation', async (c) => {
        await c.query(LOCK_UPDATE)
        const head = await this.head(c)
        this.checkKey(head.keyId)
        const r = await c.query<Row>(`SELECT ${ROW} FROM tfactl_users ORDER BY name FOR UPDATE`)
        pgWork.rowsRead += r.rows.length
        const doc = this.decode(head, r.rows)
        this.keys.prepareNext() // the new key on disk beside the old one before any row names it
        const next = this.keys.current()
        newId = next.id
        await this.write(c, r.rows, snapshot(doc), doc, next, true) // every row re-sealed and authenticated with the new key
        // the settings as they are, authenticated with the new key: the one command that
        // (re-)authenticates a database's settings (a database written before they were)
        await c.query('UPDATE tfactl_settings SET key_id = $1, mac = $2 WHERE id = 1', [next.id, settingsMac(next.key, next.id, doc.settings)])
        return [...doc.users].filter(([, u]) => u.secret || u.pending).map(([name]) => name)
      })
      this.keys.settle(newId) // committed: the new key becomes the key file
      return {users, key: this.keyFile}
    } catch (error) {
      this.keys.settle(null) // not committed: the new key goes, the old one stays
      throw error
    }
  }

  async recordEvent(command: string, user: string | null | string[], outcome: Outcome): Promise<string | undefined> {
    // The command already failed with the one line naming the unreachable database (exit 3);
    // a second line saying its event went unrecorded for the same reason only adds noise.
    if (this.unreachable) return undefined
    const users = Array.isArray(user) ? (user.length > 0 ? user : [null]) : [user]
    try {
      // one statement: one row per user the command acted on (a bulk command names every user)
      await this.tx('recording the audit event', (c) => this.insertEvents(c, command, users, outcome), {begin: null})
      return undefined
    } catch (error) {
      return `could not record the audit event: ${(error as Error).message}`
    }
  }

  /** Many events in one statement (radius:serve records hundreds a second), with the RADIUS client's address. */
  async recordEvents(events: AuditRecord[]): Promise<string | undefined> {
    if (events.length === 0) return undefined
    try {
      await this.tx(
        'recording audit events',
        async (c) => {
          const column = <K extends keyof AuditRecord>(k: K) => events.map((e) => e[k] ?? null)
          await c.query(
            `INSERT INTO tfactl_audit (time, host, uid, sudo_user, command, "user", outcome, reason, client)
           SELECT t, $1, $2, NULL, command, u, outcome, reason, client
           FROM unnest($3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) AS e(t, command, u, outcome, reason, client)`,
            [this.host, process.getuid?.() ?? -1, column('time'), column('command'), column('user'), column('outcome'), column('reason'), column('client')],
          )
        },
        {begin: null},
      )
      return undefined
    } catch (error) {
      return `could not record ${events.length} audit event(s): ${(error as Error).message}`
    }
  }

  async readAudit(): Promise<AuditEvent[]> {
    return this.tx('reading the audit trail', async (c) => {
      await this.head(c)
      const r = await c.query<{
        time: Date
        host: string
        uid: number | null
        sudo_user: string | null
        command: string
        user: string | null
        outcome: string
        reason: string | null
        client: string | null
      }>('SELECT time, host, uid, sudo_user, command, "user", outcome, reason, client FROM tfactl_audit ORDER BY id')
      return r.rows.map((e) => ({
        time: e.time.toISOString(),
        host: e.host,
        actor: {uid: e.uid ?? -1, sudoUser: e.sudo_user},
        command: e.command,
        user: e.user,
        outcome: e.outcome,
        reason: e.reason,
        ...(e.client ? {client: e.client} : {}),
      }))
    })
  }

  async check(): Promise<StoreCheck> {
    return this.tx('the check', async (c) => {
      const {head, doc} = await this.readAll(c)
      if (head.keyId !== null) checkPrivateFile(this.keyFile)
      return {path: this.description, valid: true, exists: true, version: doc.version, users: doc.users.size, schema: head.schema, keyId: head.keyId}
    })
  }

  async doctor(): Promise<{findings: StoreFinding[]; doc?: Doc}> {
    const findings: StoreFinding[] = []
    const add = (check: string, status: StoreFinding['status'], message: string, fix?: string) =>
      findings.push(fix ? {check, status, message, fix} : {check, status, message})
    const weak = transportWeakness(this.spec)
    add('database connection', weak ? 'finding' : 'ok', weak ?? "the Unix socket, or TLS with the server's certificate and name verified")
    let info: {version: string; skewMs: number; schema: number; keyId: string | null; doc: Doc; reached?: Endpoint; ha: Omit<StoreFinding, 'fix'>[]}
    try {
      info = await this.tx('the doctor checks', async (c) => {
        const sent = Date.now()
        const t = await c.query<{now: string; version: string}>(
          "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8::text AS now, current_setting('server_version') AS version",
        )
        const local = (sent + Date.now()) / 2
        const head = await this.head(c)
        const users = await c.query<Row>(`SELECT ${ROW} FROM tfactl_users ORDER BY name`)
        pgWork.rowsRead += users.rows.length
        // last: a query that fails here aborts the (read-only) transaction, and nothing comes after it
        const ha = await replicationFindings(c, (c as {user?: string}).user ?? '').catch((error: Error) => [
          {check: 'replication', status: 'unknown' as const, message: `cannot tell (${error.message.split('\n')[0]})`},
        ])
        const reached = (c as {endpoint?: Endpoint}).endpoint
        const base = {version: t.rows[0].version, skewMs: Number(t.rows[0].now) - local, schema: head.schema, keyId: head.keyId, reached, ha}
        try {
          this.checkKey(head.keyId)
        } catch (error) {
          add('key', 'finding', (error as Error).message)
          return {...base, doc: undefined as unknown as Doc}
        }
        const doc = this.decode(head, users.rows)
        try {
          this.authenticate(head, doc, users.rows)
        } catch (error) {
          add('settings', 'finding', (error as Error).message, head.keyId === null ? 'tfactl twofactor:enable' : 'tfactl store:rotate-key')
          return {...base, doc: undefined as unknown as Doc}
        }
        return {...base, doc}
      })
    } catch (error) {
      add('database', 'finding', (error as Error).message)
      return {findings}
    }
    const hosts = this.failover?.hosts ?? []
    const at = info.reached && hosts.length > 1 ? ` at ${endpointName(info.reached)} (host ${hosts.indexOf(info.reached) + 1} of ${hosts.length})` : ''
    add('database', 'ok', `${this.description}: PostgreSQL ${info.version}${at}, schema version ${info.schema}`)
    for (const f of info.ha) add(f.check, f.status, f.message)
    if (info.keyId === null) add('key', 'ok', `no secret sealed yet; the first one creates ${this.keyFile}`)
    else if (info.doc) {
      try {
        checkPrivateFile(this.keyFile)
        add('key', 'ok', `${this.keyFile} is the database's key (key id ${info.keyId}) and is private (0600)`)
      } catch (error) {
        add('key', 'finding', (error as Error).message)
      }
    }
    const skew = Math.abs(info.skewMs) / 1000
    if (skew > 10)
      add(
        'database clock',
        'finding',
        `this host's clock and the database server's differ by ${skew.toFixed(0)} s: codes depend on each host's clock (check NTP on both)`,
      )
    else add('database clock', 'ok', `within ${Math.max(skew, 0.001).toFixed(3)} s of the database server's`)
    return {findings, doc: info.doc}
  }

  /**
   * Logins in batches (loginBatch), as many batches at once as the pool has connections; audit
   * lines go out in batches too (recordEvents). `waiting`: logins not yet in a batch, and batches
   * waiting for a connection.
   */
  responder(warn: (line: string) => void): Responder {
    const logins = batchedLogins((batch) => this.loginBatch(batch), {
      concurrency: this.poolSize,
      maxBatch: MAX_LOGIN_BATCH,
      boundMs: LOGIN_BOUND_MS,
      late: () => storeError(`${this.description}: the login check waited ${LOGIN_BOUND_MS / 1000} s for the database; refused`),
    })
    return {
      login: logins.login,
      audit: batchedAudit(this, warn),
      pool: () => {
        const pool = this.pool
        const waiting = logins.waiting() + (pool?.waitingCount ?? 0)
        return {inUse: pool ? pool.totalCount - pool.idleCount : 0, waiting}
      },
    }
  }

  async close(): Promise<void> {
    const pool = this.pool
    this.pool = undefined
    await pool?.end().catch(() => {})
  }
}

/** Each user's record as it was: as JSON, to tell afterwards which ones changed, and its secrets, to keep a sealed one that did not change. */
type Snapshot = Map<string, {json: string; secret: string | null; pending: string | null}>

function snapshot(doc: Doc): Snapshot {
  return new Map([...doc.users].map(([name, record]) => [name, {json: JSON.stringify(record), secret: record.secret, pending: record.pending?.secret ?? null}]))
}
