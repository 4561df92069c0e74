// The third-party PostgreSQL client in one module: scripts/bundle.mjs bundles it apart
// (dist/pg-client.cjs), so that the login fast path loads it only for a database store.
export {default as pg} from 'pg'
export {parse} from 'pg-connection-string'
export {default as pgpass} from 'pgpass'
