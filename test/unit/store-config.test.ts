// Choosing the store: flags beat the environment, which beats the config file; PostgreSQL URLs
// are told from paths; passwords never reach a message.
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {TfaError} from '../../src/core/errors.js'
import {isDatabaseUrl} from '../../src/store/backend.js'
import {DEFAULT_KEY_FILE, resolveStore} from '../../src/store/config.js'
import {poolConfig, redactUrl} from '../../src/store/postgres/connect.js'

const dir = mkdtempSync(join(tmpdir(), 'tfactl-config-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))
const config = (body: string) => {
  const path = join(dir, `config-${Math.random().toString(36).slice(2)}.json`)
  writeFileSync(path, body)
  return path
}
const usage = (fn: () => unknown): string => {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(TfaError)
    expect((error as TfaError).exit).toBe(2)
    return (error as Error).message
  }
  throw new Error('expected a usage error')
}

describe('resolveStore', () => {
  const url = 'postgresql://tfactl@db1/tfactl'
  it('takes the flag, then the environment, then the config file', () => {
    const TFACTL_CONFIG = config(JSON.stringify({store: url, keyFile: '/srv/k.key'}))
    expect(resolveStore({}, {TFACTL_CONFIG}, 1000)).toEqual({spec: url, keyFile: '/srv/k.key', ignored: []})
    expect(resolveStore({}, {TFACTL_CONFIG, TFACTL_STORE: 'postgres://x@y/z'}, 1000).spec).toBe('postgres://x@y/z')
    expect(resolveStore({store: '/tmp/s.json'}, {TFACTL_CONFIG, TFACTL_STORE: 'postgres://x@y/z'}, 1000)).toEqual({
      spec: '/tmp/s.json',
      keyFile: '/srv/k.key',
      ignored: [],
    })
    expect(resolveStore({keyFile: '/a.key'}, {TFACTL_CONFIG, TFACTL_KEY_FILE: '/b.key'}, 1000).keyFile).toBe('/a.key')
    expect(resolveStore({}, {TFACTL_CONFIG, TFACTL_KEY_FILE: '/b.key'}, 1000).keyFile).toBe('/b.key')
  })

  it("defaults a database store's key to /etc/tfactl/tfactl.key, a file store keeps its own", () => {
    expect(resolveStore({store: url}, {}, 1000)).toEqual({spec: url, keyFile: DEFAULT_KEY_FILE, ignored: []})
    expect(resolveStore({store: 'rel/store.json'}, {}, 1000)).toEqual({spec: join(process.cwd(), 'rel/store.json'), keyFile: undefined, ignored: []})
  })

  it('refuses a bad config file with exit 2 naming it', () => {
    for (const body of ['{', '[]', '{"store": 1}', '{"stroe": "x"}', '{"keyFile": ""}']) {
      const path = config(body)
      expect(usage(() => resolveStore({}, {TFACTL_CONFIG: path}, 1000))).toContain(path)
    }
    expect(usage(() => resolveStore({}, {TFACTL_CONFIG: join(dir, 'missing.json')}, 1000))).toContain('missing.json')
  })
})

describe('PostgreSQL URLs', () => {
  it('tells URLs from paths', () => {
    expect(isDatabaseUrl('postgresql://h/db')).toBe(true)
    expect(isDatabaseUrl('postgres://h/db')).toBe(true)
    expect(isDatabaseUrl('/var/lib/tfactl/store.json')).toBe(false)
    expect(isDatabaseUrl('postgresql.json')).toBe(false)
  })

  it('hides passwords in messages', () => {
    expect(redactUrl('postgresql://u:s3cret@h:5432/db')).toBe('postgresql://u:***@h:5432/db')
    expect(redactUrl('postgresql://h/db?user=u&password=s3cret&sslmode=require')).toBe('postgresql://h/db?user=u&password=***&sslmode=require')
    expect(redactUrl('postgresql://u@h/db')).toBe('postgresql://u@h/db')
    // a password with characters that were not percent-encoded: the user information ends at the last @
    expect(redactUrl('postgresql://u:s3cr/et@h/db')).toBe('postgresql://u:***@h/db')
    expect(redactUrl('postgresql://u:p@ss@h/db')).toBe('postgresql://u:***@h/db')
    expect(redactUrl('postgresql://u:a?b#c@h/db')).toBe('postgresql://u:***@h/db')
  })

  it('reads libpq-style URLs: socket host, port, sslmode', () => {
    const c = poolConfig('postgresql:///tfactl?host=/run/postgresql&port=5433&user=tf', 2)
    expect(c).toMatchObject({host: '/run/postgresql', port: 5433, user: 'tf', database: 'tfactl'})
    expect(poolConfig('postgresql://h/db?sslmode=disable', 2).ssl).toBe(false)
    expect(poolConfig('postgresql://h/db?sslmode=require', 2).ssl).toMatchObject({rejectUnauthorized: false})
    expect(usage(() => poolConfig('postgresql://u:pw@h/db?sslmode=maybe', 2))).toContain('sslmode=maybe')
    expect(usage(() => poolConfig('postgresql://u:pw@h:port/db', 2))).not.toContain(':pw@')
  })
})
