// doctor's view of high availability: what the server tfactl reached is (primary or standby),
// whether its writes wait for a synchronous standby, and the replication lag it can see.
// Read from pg_stat_replication (primary) or the replay position (standby): a role without
// pg_read_all_stats (pg_monitor) sees the standbys but not their state, and is told so.
import type pg from 'pg'
import type {StoreFinding} from '../backend.js'

type Finding = Omit<StoreFinding, 'fix'>

interface Standby {
  name: string
  state: string | null
  sync_state: string | null
  behind: string | null
  lag_ms: number | null
}

/** A lag as people read it: bytes of WAL and time, when known. */
function lag(bytes: string | null, ms: number | null): string {
  const parts: string[] = []
  if (bytes !== null) parts.push(`${Number(bytes)} bytes`)
  if (ms !== null) parts.push(`${Number(ms).toFixed(ms < 10 ? 1 : 0)} ms`)
  return parts.length > 0 ? parts.join(', ') : 'unknown'
}

/** The role and replication findings for the server `c` is connected to (`user`: the role tfactl logs in as). */
export async function replicationFindings(c: pg.ClientBase, user: string): Promise<Finding[]> {
  const role = await c.query<{standby: boolean; names: string; commit: string}>(
    "SELECT pg_is_in_recovery() AS standby, current_setting('synchronous_standby_names') AS names, current_setting('synchronous_commit') AS commit",
  )
  const {standby, names, commit} = role.rows[0]
  if (standby) {
    const r = await c.query<{behind: string | null; lag_ms: number | null}>(
      `SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text AS behind,
              (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::float8 AS lag_ms`,
    )
    return [
      {
        check: 'database role',
        status: 'finding',
        message: 'standby (read-only, in recovery): every login writes; list the primary too and add target_session_attrs=read-write (docs/ha.md)',
      },
      {
        check: 'replication',
        status: 'ok',
        message: `receiving from a primary; received but not replayed: ${lag(r.rows[0].behind, null)}; last replayed commit ${r.rows[0].lag_ms === null ? 'unknown' : `${(r.rows[0].lag_ms / 1000).toFixed(1)} s ago`}`,
      },
    ]
  }
  const r = await c.query<Standby>(
    `SELECT application_name AS name, state, sync_state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::text AS behind,
            (extract(epoch FROM replay_lag) * 1000)::float8 AS lag_ms
     FROM pg_stat_replication ORDER BY application_name`,
  )
  const findings: Finding[] = [{check: 'database role', status: 'ok', message: 'primary (read-write)'}]
  const standbys = r.rows
  const shown = (s: Standby) => `${s.name || '(unnamed)'} ${s.state ?? '?'}${s.sync_state ? ` ${s.sync_state}` : ''}, lag ${lag(s.behind, s.lag_ms)}`
  const waits = names.trim() !== '' && ['on', 'remote_write', 'remote_apply'].includes(commit)
  if (standbys.length > 0 && standbys.every((s) => s.state === null))
    findings.push({
      check: 'replication',
      status: 'unknown',
      message: `${standbys.length} standby(s) connected, but ${user} may not read their state: GRANT pg_monitor TO ${user}`,
    })
  else if (names.trim() === '')
    findings.push({
      check: 'replication',
      status: 'ok',
      message:
        standbys.length === 0
          ? 'no standby: while this server is down no one logs in (docs/ha.md)'
          : `asynchronous (synchronous_standby_names is empty): ${standbys.map(shown).join('; ')}; a failover loses what the standby had not received (docs/ha.md)`,
    })
  else if (!waits)
    findings.push({
      check: 'replication',
      status: 'finding',
      message: `synchronous_commit = ${commit}: commits do not wait for the standby, so a failover may lose accepted codes; set synchronous_commit = on`,
    })
  else {
    const inSync = standbys.filter((s) => s.state === 'streaming' && (s.sync_state === 'sync' || s.sync_state === 'quorum'))
    findings.push(
      inSync.length > 0
        ? {check: 'replication', status: 'ok', message: `synchronous (${names.trim()}, synchronous_commit = ${commit}): ${standbys.map(shown).join('; ')}`}
        : {
            check: 'replication',
            status: 'finding',
            message: `synchronous_standby_names = '${names.trim()}' but no standby is in sync${standbys.length > 0 ? ` (${standbys.map(shown).join('; ')})` : ''}: every write, every login, waits until one is`,
          },
    )
  }
  return findings
}
