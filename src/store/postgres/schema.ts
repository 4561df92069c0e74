import type {PoolClient} from 'pg'

/**
 * The database schema, versioned and upgraded forward only: MIGRATIONS[i] takes a database from
 * version i to i + 1. Every table is prefixed `tfactl_`, so the database may be shared.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS tfactl_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
   -- one row: the global settings, and the id of the key that seals the secrets (never the key)
   CREATE TABLE IF NOT EXISTS tfactl_settings (id integer PRIMARY KEY CHECK (id = 1), settings jsonb NOT NULL DEFAULT '{}', key_id text);
   INSERT INTO tfactl_settings (id) VALUES (1) ON CONFLICT DO NOTHING;
   -- one row per user: the record as the file store writes it (secrets sealed); rev grows with
   -- every write, so that a writer that read an older row can tell and start over
   CREATE TABLE IF NOT EXISTS tfactl_users (name text PRIMARY KEY, rev bigint NOT NULL DEFAULT 1, data jsonb NOT NULL);
   CREATE TABLE IF NOT EXISTS tfactl_audit (
     id bigserial PRIMARY KEY, time timestamptz NOT NULL, host text NOT NULL, uid integer, sudo_user text,
     command text NOT NULL, "user" text, outcome text NOT NULL, reason text, client text);
   CREATE INDEX IF NOT EXISTS tfactl_audit_time ON tfactl_audit (time);
   CREATE INDEX IF NOT EXISTS tfactl_audit_user ON tfactl_audit ("user", time);`,
  // the settings' and each user row's authentication by the key (src/store/postgres/mac.ts):
  // null until a host that holds the key writes them or rotates the key
  `ALTER TABLE tfactl_settings ADD COLUMN IF NOT EXISTS mac text;
   ALTER TABLE tfactl_users ADD COLUMN IF NOT EXISTS mac text;`,
]

export const SCHEMA_VERSION = MIGRATIONS.length

/**
 * An index that only makes a read cheaper and changes no meaning, so it is not part of the schema
 * version (a new version would make every older tfactl refuse the database): `twofactor:status`
 * counts the users without a secret from it (usually few) instead of opening every row's JSON.
 * New databases get it with their schema; an older one gets it from the next whole-store update
 * (store.ts), or never when the role may not create it (not the table's owner): then the count
 * only reads every row, as before.
 */
export const USERS_INDEX = 'tfactl_users_no_secret'
export const CREATE_USERS_INDEX = `CREATE INDEX IF NOT EXISTS ${USERS_INDEX} ON tfactl_users (name) WHERE data->>'secret' IS NULL`

/** Advisory lock keys (class 0x7fa): schema changes; whole-store updates. */
export const LOCK_SCHEMA = 'SELECT pg_advisory_xact_lock(2042, 1)'
export const LOCK_UPDATE = 'SELECT pg_advisory_xact_lock(2042, 2)'

/** The schema's version; 0 when there is none yet. */
export async function schemaVersion(client: PoolClient): Promise<number> {
  const r = await client.query<{v: number | null}>(`SELECT CASE WHEN to_regclass('tfactl_schema') IS NULL THEN 0 ELSE NULL END AS v`)
  if (r.rows[0].v === 0) return 0
  const v = await client.query<{v: number | null}>('SELECT max(version) AS v FROM tfactl_schema')
  return v.rows[0].v ?? 0
}

/**
 * Creates or upgrades the schema. Safe when several hosts start at once: the first takes the
 * schema lock and migrates; the others wait for it, then find nothing left to do.
 * Returns the version found; a database newer than this tfactl is left alone (the caller refuses it).
 */
export async function migrate(client: PoolClient): Promise<number> {
  await client.query('BEGIN')
  try {
    await client.query(LOCK_SCHEMA)
    const found = await schemaVersion(client)
    for (let v = found; v < SCHEMA_VERSION; v++) {
      await client.query(MIGRATIONS[v])
      await client.query('INSERT INTO tfactl_schema (version) VALUES ($1) ON CONFLICT DO NOTHING', [v + 1])
    }
    if (found < SCHEMA_VERSION) await client.query(CREATE_USERS_INDEX)
    await client.query('COMMIT')
    return found
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  }
}
