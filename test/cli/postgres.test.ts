// The fleet store: a real PostgreSQL server, started by the tests. One contract suite
// runs against both backends; then "two hosts" (two CLI processes, each with its own copy of the
// key file, one database) check that replay state, failures, recovery and bypass codes are shared.
import {chmodSync, copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {hashCodes} from '../../src/core/codes.js'
import {SCHEMA_VERSION} from '../../src/store/postgres/schema.js'
import {PgStore} from '../../src/store/postgres/store.js'
import {oathtool, tempStore, tfactl} from '../helpers/cli.js'
import {check, dbFleets, enable, expectDecision, expectJsonError, renew, type TempStore, withinOneStep, wrongCode} from './support.js'

/** Fresh databases `pgtestN` and host A on each; `hostB()` copies A's key file (how a host joins) and names it in the environment. */
const db = dbFleets('pgtest', 'env')
const {host, fleet} = db

const secretOf = async (h: TempStore, user: string): Promise<string> => (await h.run(['user:secret:show', user, '--json'])).json.secret

describe.each(['file', 'postgres'] as const)('store contract (%s backend)', (backend) => {
  const make = async (): Promise<TempStore> => {
    if (backend === 'file') return tempStore()
    return (await fleet()).a
  }

  it('enrols, accepts a code once and refuses its replay', async () => {
    const s = await make()
    await enable(s)
    const {secret} = await renew(s, 'alice')
    await withinOneStep(30, async () => {
      const code = await oathtool(secret)
      expectDecision(await check(s, 'alice', {code}), true, 'code_accepted')
      expectDecision(await check(s, 'alice', {code}), false, 'code_replayed')
    })
    expectDecision(await check(s, 'bob'), true, 'no_secret', true)
    const list = await s.run(['user:list', '--json'])
    expect(list.json.users.map((u: any) => u.user)).toEqual(['alice'])
  })

  it('locks a user after max failures; unlock clears it; recovery and bypass codes work once', async () => {
    const s = await make()
    await enable(s, '--max-failures', '2')
    const {secret} = await renew(s, 'alice')
    const code = await oathtool(secret)
    expectDecision(await check(s, 'alice', {code: wrongCode(code)}), false, 'code_invalid')
    expectDecision(await check(s, 'alice', {code: wrongCode(code)}), false, 'code_invalid')
    expectDecision(await check(s, 'alice', {code}), false, 'locked_out')
    const bypass = (await s.run(['user:bypass', 'alice', '--json'])).json.code
    expectDecision(await check(s, 'alice', {code: bypass}), true, 'bypass_accepted')
    expectDecision(await check(s, 'alice', {code: bypass}), false, 'code_invalid')
    expect((await s.run(['user:unlock', 'alice', '--json'])).code).toBe(0)
    const codes = (await s.run(['user:recovery:generate', 'alice', '--count', '2', '--json'])).json.codes
    expectDecision(await check(s, 'alice', {code: codes[0]}), true, 'recovery_code_accepted')
    expectDecision(await check(s, 'alice', {code: codes[0]}), false, 'code_invalid')
  })

  it('rotates the key, validates the store, and records an audit trail', async () => {
    const s = await make()
    await enable(s)
    const {secret} = await renew(s, 'alice')
    const rotated = await s.run(['store:rotate-key', '--json'])
    expect(rotated.code, rotated.stderr).toBe(0)
    expect(rotated.json).toMatchObject({rotated: true, users: ['alice']})
    expect(await secretOf(s, 'alice')).toBe(secret)
    const checked = await s.run(['store:check', '--json'])
    expect(checked.code, checked.stderr).toBe(0)
    expect(checked.json).toMatchObject({valid: true, exists: true, users: 1})
    const audit = (await s.run(['audit', '--user', 'alice', '--json'])).json.events
    expect(audit.map((e: any) => e.command)).toEqual(['user:secret:renew'])
    if (backend === 'postgres') expect(audit[0].host).toBeTypeOf('string')
  })

  it('bulk-enrols a users file in one go and unsets a secret', async () => {
    const s = await make()
    const list = join(db.work, `users-${backend}-${Date.now()}.txt`)
    writeFileSync(list, Array.from({length: 200}, (_, i) => `user${i}`).join('\n'))
    const r = await s.run(['user:secret:renew', '--users-file', list, '--qr', 'none', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users).toHaveLength(200)
    const again = await s.run(['user:secret:renew', '--users-file', list, '--if-missing', '--qr', 'none', '--json'])
    expect(again.json.users.filter((u: any) => u.changed)).toHaveLength(0)
    expect((await s.run(['user:secret:unset', 'user7', '--yes', '--json'])).json).toMatchObject({changed: true})
    expect((await s.run(['user:list', '--json'])).json.users).toHaveLength(199)
  })
})

describe('two hosts sharing one database', () => {
  it('refuses on B a code accepted on A (code_replayed)', async () => {
    const {a, hostB} = await fleet()
    await enable(a)
    const {secret} = await renew(a, 'alice')
    const b = hostB()
    await withinOneStep(30, async () => {
      const code = await oathtool(secret)
      expectDecision(await check(a, 'alice', {code}), true, 'code_accepted')
      expectDecision(await check(b, 'alice', {code}), false, 'code_replayed')
    })
  })

  it('accepts exactly one of 20 parallel checks of one code across A and B', async () => {
    const {a, hostB} = await fleet()
    await enable(a)
    const {secret} = await renew(a, 'alice')
    const b = hostB()
    const results = await withinOneStep(30, async () => {
      const code = await oathtool(secret)
      return Promise.all(Array.from({length: 20}, (_, i) => check(i % 2 ? a : b, 'alice', {code})))
    })
    for (const r of results) expect([0, 1], r.stderr).toContain(r.code)
    expect(results.filter((r) => r.json?.allowed)).toHaveLength(1)
    expect(results.filter((r) => r.json?.reason === 'code_replayed')).toHaveLength(19)
  })

  it('locks the user on both hosts when failures are split between them', async () => {
    const {a, hostB} = await fleet()
    await enable(a, '--max-failures', '4')
    const {secret} = await renew(a, 'alice')
    const b = hostB()
    const code = await oathtool(secret)
    for (const h of [a, b, a, b]) expectDecision(await check(h, 'alice', {code: wrongCode(code)}), false, 'code_invalid')
    expectDecision(await check(a, 'alice', {code}), false, 'locked_out')
    expectDecision(await check(b, 'alice', {code}), false, 'locked_out')
  })

  it('spends recovery and bypass codes everywhere', async () => {
    const {a, hostB} = await fleet()
    await enable(a)
    await renew(a, 'alice')
    const b = hostB()
    const codes = (await b.run(['user:recovery:generate', 'alice', '--count', '3', '--json'])).json.codes
    expectDecision(await check(a, 'alice', {code: codes[1]}), true, 'recovery_code_accepted')
    expectDecision(await check(b, 'alice', {code: codes[1]}), false, 'code_invalid')
    expectDecision(await check(b, 'alice', {code: codes[2]}), true, 'recovery_code_accepted')
    expectDecision(await check(a, 'alice', {code: codes[2]}), false, 'code_invalid')
    const bypass = (await a.run(['user:bypass', 'alice', '--json'])).json.code
    expectDecision(await check(b, 'alice', {code: bypass}), true, 'bypass_accepted')
    expectDecision(await check(a, 'alice', {code: bypass}), false, 'code_invalid')
  })

  it('starts an update over when a login on another host changed a row it read (the accepted step is never written over)', async () => {
    const {a, url, keys} = await fleet()
    await enable(a)
    const {secret} = await renew(a, 'alice')
    // the backend itself, as a long-running process uses it, so that the login can be run at the
    // worst moment: after this update read alice's row, before it writes it back
    const store = new PgStore(url, {keyFile: join(keys, 'a', 'tfactl.key')})
    try {
      await withinOneStep(30, async () => {
        const code = await oathtool(secret)
        let runs = 0
        await store.update(async (doc) => {
          if (++runs === 1) expectDecision(await check(a, 'alice', {code}), true, 'code_accepted')
          doc.users.get('alice')!.recovery = hashCodes(['12345678'])
        })
        expect(runs).toBe(2)
        expectDecision(await check(a, 'alice', {code}), false, 'code_replayed')
      })
      expectDecision(await check(a, 'alice', {code: '12345678'}), true, 'recovery_code_accepted')
    } finally {
      await store.close()
    }
  })

  it('keeps all of 8 parallel renews from both hosts', async () => {
    const {a, hostB} = await fleet()
    await enable(a)
    await renew(a, 'seed') // creates the key file B copies
    const b = hostB()
    const users = Array.from({length: 8}, (_, i) => `user${i}`)
    const runs = await Promise.all(users.map((u, i) => (i % 2 ? a : b).run(['user:secret:renew', u, '--qr', 'none', '--json'])))
    for (const r of runs) expect(r.code, r.stderr).toBe(0)
    const listed = (await b.run(['user:list', '--json'])).json.users.map((u: any) => u.user)
    expect(listed).toEqual(['seed', ...users])
    for (const [i, r] of runs.entries()) expect(await secretOf(i % 2 ? b : a, users[i])).toBe(r.json.users[0].secret)
  })

  it('keeps secrets and recovery codes out of the database in clear (pg_dump)', async () => {
    const {a, name} = await fleet()
    await enable(a)
    const secrets = [(await renew(a, 'alice')).secret, (await renew(a, 'bob', '--pending')).secret]
    const codes = (await a.run(['user:recovery:generate', 'alice', '--json'])).json.codes as string[]
    const dump = db.pg.tool('pg_dump', [name])
    expect(dump).toContain('tfactl_users')
    for (const s of secrets) {
      expect(dump).not.toContain(s)
      expect(dump.toLowerCase()).not.toContain(base32Decode(s)!.toString('hex'))
    }
    for (const c of codes) expect(dump).not.toContain(c)
  })

  it('refuses a host whose key file is another key, or missing (exit 3, never a login)', async () => {
    const {a, url, keys} = await fleet()
    await enable(a)
    const {secret} = await renew(a, 'alice')
    mkdirSync(join(keys, 'c'), {recursive: true, mode: 0o700})
    writeFileSync(join(keys, 'c', 'tfactl.key'), Buffer.alloc(32, 7), {mode: 0o600})
    const code = await oathtool(secret)
    for (const other of [host(url, join(keys, 'c', 'tfactl.key')), host(url, join(keys, 'missing', 'tfactl.key'))]) {
      const r = await check(other, 'alice', {code})
      expect(expectJsonError(r, 3)).toMatch(/key/)
      expect(expectJsonError(await check(other, 'bob'), 3)).toMatch(/key/)
      // status given --key-file (answered without oclif) authenticates the settings with that key too
      expect(expectJsonError(await other.run(['twofactor:status', '--json']), 3)).toMatch(/key/)
    }
    expect((await a.run(['twofactor:status', '--json'])).json.users).toEqual({total: 1, configured: 1})
    expectDecision(await check(a, 'alice', {code}), true, 'code_accepted')
  })

  it('refuses the right key in a directory others can write (exit 3, saying chmod): they could swap the key', async () => {
    const {a, url, keys} = await fleet()
    await enable(a)
    const {secret} = await renew(a, 'alice')
    const open = join(keys, 'open')
    mkdirSync(open, {mode: 0o700})
    copyFileSync(join(keys, 'a', 'tfactl.key'), join(open, 'tfactl.key'))
    chmodSync(open, 0o777)
    const other = host(url, join(open, 'tfactl.key'))
    expect(expectJsonError(await check(other, 'alice', {code: await oathtool(secret)}), 3)).toMatch(new RegExp(`key file's directory ${open} .*chmod go-w`))
    chmodSync(open, 0o700)
    expectDecision(await check(other, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
  })

  it('rotates the key on one host; the others get exit 3 until they have the new key file', async () => {
    const {a, hostB, keys} = await fleet()
    await enable(a)
    const {secret} = await renew(a, 'alice')
    const b = hostB()
    const rotated = await a.run(['store:rotate-key', '--json'])
    expect(rotated.code, rotated.stderr).toBe(0)
    expect(expectJsonError(await check(b, 'alice', {code: await oathtool(secret)}), 3)).toMatch(/is not the key/)
    copyFileSync(join(keys, 'a', 'tfactl.key'), join(keys, 'b', 'tfactl.key'))
    expect(await secretOf(b, 'alice')).toBe(secret)
  })

  it('creates the schema once when many hosts start at once', async () => {
    const {url, keys} = await fleet()
    const runs = await Promise.all(Array.from({length: 6}, () => host(url, join(keys, 'a', 'tfactl.key')).run(['user:list', '--json'])))
    for (const r of runs) expect(r.code, r.stderr).toBe(0)
    const checked = await host(url, join(keys, 'a', 'tfactl.key')).run(['store:check', '--json'])
    expect(checked.json).toMatchObject({schema: SCHEMA_VERSION, users: 0})
  })
})

describe('database store: configuration and refusals', () => {
  it('reads store and keyFile from TFACTL_CONFIG; flags beat it; a bad config or URL is exit 2', async () => {
    const {a, url, keys} = await fleet()
    await enable(a)
    await renew(a, 'alice')
    const config = join(keys, 'config.json')
    writeFileSync(config, JSON.stringify({store: url, keyFile: join(keys, 'a', 'tfactl.key')}))
    const viaConfig = await tfactl(['user:list', '--json'], {env: {TFACTL_CONFIG: config}})
    expect(viaConfig.code, viaConfig.stderr).toBe(0)
    expect(viaConfig.json.users.map((u: any) => u.user)).toEqual(['alice'])
    const file = tempStore()
    const flagWins = await tfactl(['user:list', '--json', '--store', file.path], {env: {TFACTL_CONFIG: config}})
    expect(flagWins.json.users).toEqual([])
    file.cleanup()
    writeFileSync(config, '{"store": 5}')
    expect(expectJsonError(await tfactl(['user:list', '--json'], {env: {TFACTL_CONFIG: config}}), 2)).toContain(config)
    const bad = await tfactl(['login:check', 'alice', '--json', '--store', 'postgresql://u:topsecret@[nope/db'])
    const message = expectJsonError(bad, 2)
    expect(message).toContain('postgresql://u:***@')
    expect(bad.stdout + bad.stderr).not.toContain('topsecret')
  })

  it('validates rows as it validates files, and refuses a schema from a newer tfactl (exit 3)', async () => {
    const {a, name} = await fleet()
    await enable(a)
    await renew(a, 'alice')
    db.pg.tool('psql', ['-qc', `UPDATE tfactl_users SET data = jsonb_set(data, '{failures}', '"many"') WHERE name = 'alice'`, name])
    expect(expectJsonError(await a.run(['store:check', '--json']), 3)).toContain('users.alice.failures')
    expect(expectJsonError(await check(a, 'alice', {code: '123456'}), 3)).toContain('users.alice.failures')
    db.pg.tool('psql', ['-qc', `UPDATE tfactl_users SET data = jsonb_set(data, '{failures}', '0') WHERE name = 'alice'`, name])
    expect((await a.run(['store:check', '--json'])).code).toBe(0)
    db.pg.tool('psql', ['-qc', 'INSERT INTO tfactl_schema (version) VALUES (99)', name])
    expect(expectJsonError(await check(a, 'alice', {code: '123456'}), 3)).toMatch(/newer tfactl/)
  })

  it('refuses ssh:sync and --oath-file with exit 2 pointing to RADIUS', async () => {
    const {a} = await fleet()
    expect(expectJsonError(await a.run(['ssh:sync', '--json']), 2)).toMatch(/radius:serve/)
    expect(expectJsonError(await a.run(['twofactor:enable', '--oath-file', '/etc/users.oath', '--json']), 2)).toMatch(/radius:serve/)
  })

  it('migrates a file store: replay state, recovery codes, failures, pending secrets; refuses a non-empty destination', async () => {
    const file = tempStore()
    await enable(file, '--max-failures', '2')
    const {secret} = await renew(file, 'alice')
    await renew(file, 'carol', '--pending')
    const codes = (await file.run(['user:recovery:generate', 'alice', '--json'])).json.codes
    const {a, hostB} = await fleet()
    await withinOneStep(30, async () => {
      const code = await oathtool(secret)
      expectDecision(await check(file, 'alice', {code}), true, 'code_accepted')
      expectDecision(await check(file, 'alice', {code: wrongCode(code)}), false, 'code_invalid')
      const m = await a.run(['store:migrate', '--from', file.path, '--json'])
      expect(m.code, m.stderr).toBe(0)
      expect(m.json).toEqual({from: file.path, users: 2, settingsReplaced: false, changed: true})
      expectDecision(await check(a, 'alice', {code}), false, 'code_replayed')
    })
    const b = hostB()
    expect(await secretOf(b, 'alice')).toBe(secret)
    expect((await b.run(['user:list', '--json'])).json.users).toMatchObject([
      {user: 'alice', recoveryCodesLeft: 10},
      {user: 'carol', pending: true},
    ])
    expectDecision(await check(b, 'alice', {code: codes[0]}), true, 'recovery_code_accepted')
    // the failure came along: one more (after the recovery code reset it: two) locks alice
    expectDecision(await check(b, 'alice', {code: '000000'}), false, 'code_invalid')
    expectDecision(await check(a, 'alice', {code: '000000'}), false, 'code_invalid')
    expectDecision(await check(a, 'alice', {code: codes[1]}), false, 'locked_out')
    expect(statSync(`${file.path}.key`).isFile()).toBe(true) // the file store and its key are only read
    expect(expectJsonError(await a.run(['store:migrate', '--from', file.path, '--json']), 2)).toMatch(/already has 2 user\(s\).*new database/)
    expect(readFileSync(file.path, 'utf8')).toContain('"alice"')
    file.cleanup()
  })

  it("refuses the file store's repairs with exit 2 (restore a database with PostgreSQL's backups); disable still works", async () => {
    const {a} = await fleet()
    await enable(a)
    expect(expectJsonError(await a.run(['store:restore', '--json']), 2)).toMatch(/PostgreSQL's own backups/)
    expect(expectJsonError(await a.run(['twofactor:disable', '--force', '--json']), 2)).toMatch(/PostgreSQL's own backups/)
    expect((await a.run(['twofactor:status', '--json'])).json.enabled).toBe(true)
    const off = await a.run(['twofactor:disable', '--json'])
    expect(off.code, off.stderr).toBe(0)
    expect(off.json).toEqual({enabled: false, changed: true})
  })

  it('migrates a database into a file store and into another database; the source is only read', async () => {
    const src = await fleet()
    await enable(src.a, '--max-failures', '3')
    const {secret} = await renew(src.a, 'alice')
    const codes = (await src.a.run(['user:recovery:generate', 'alice', '--json'])).json.codes
    const srcKey = join(src.keys, 'a', 'tfactl.key')
    // database → file: the file store seals under a key of its own, beside it
    const file = tempStore()
    try {
      const toFile = await file.run(['store:migrate', '--from', src.url, '--from-key-file', srcKey, '--json'])
      expect(toFile.code, toFile.stderr).toBe(0)
      expect(toFile.json).toEqual({from: src.url, users: 1, settingsReplaced: false, changed: true})
      expect(await secretOf(file, 'alice')).toBe(secret)
      expect((await file.run(['twofactor:status', '--json'])).json).toMatchObject({enabled: true, maxFailures: 3})
      expect(readFileSync(file.path, 'utf8')).not.toContain(secret)
      expectDecision(await check(file, 'alice', {code: codes[0]}), true, 'recovery_code_accepted')
    } finally {
      file.cleanup()
    }
    // database → database, under the destination's own key
    const dst = await fleet()
    const toDb = await dst.a.run(['store:migrate', '--from', src.url, '--from-key-file', srcKey, '--json'])
    expect(toDb.code, toDb.stderr).toBe(0)
    expect(toDb.json).toEqual({from: src.url, users: 1, settingsReplaced: false, changed: true})
    expect(await secretOf(dst.a, 'alice')).toBe(secret)
    expect(readFileSync(join(dst.keys, 'a', 'tfactl.key'))).not.toEqual(readFileSync(srcKey))
    expectDecision(await check(dst.a, 'alice', {code: codes[1]}), true, 'recovery_code_accepted')
    // the source was only read: the code spent in the copies is still good there
    expectDecision(await check(src.a, 'alice', {code: codes[0]}), true, 'recovery_code_accepted')
    // a source the key cannot open: exit 3, the destination left empty
    const other = await fleet()
    expectJsonError(await other.a.run(['store:migrate', '--from', src.url, '--from-key-file', join(db.work, 'no-such.key'), '--json']), 3)
    expect((await other.a.run(['user:list', '--json'])).json.users).toEqual([])
    expectJsonError(await src.a.run(['store:migrate', '--from', src.url, '--json']), 2) // itself
  })

  it("migrates into a database where twofactor:enable ran first: its settings give way to the file store's, with a warning", async () => {
    const file = tempStore()
    try {
      await enable(file, '--window', '2', '--issuer', 'from-file')
      await renew(file, 'alice')
      const {a} = await fleet()
      await enable(a, '--window', '0') // the set-up guide's order: the database first, then the migration
      const m = await a.run(['store:migrate', '--from', file.path])
      expect(m.code, m.stderr).toBe(0)
      expect(m.stderr).toMatch(/warning: the settings postgresql:\/\/.* had were replaced by .*store\.json's/)
      const status = (await a.run(['twofactor:status', '--json'])).json
      expect(status).toMatchObject({enabled: true, window: 2, issuer: 'from-file', users: {total: 1, configured: 1}})
    } finally {
      file.cleanup()
    }
  })

  it('fails closed while the server is down (exit 3 within 10 s), and works again when it is back', async () => {
    const {a} = await fleet()
    await enable(a)
    const {secret} = await renew(a, 'alice')
    db.pg.stop()
    try {
      const started = Date.now()
      const r = await check(a, 'alice', {code: await oathtool(secret)})
      expect(Date.now() - started).toBeLessThan(10_000)
      expect(expectJsonError(r, 3)).toMatch(/postgresql:\/\/.*unreachable/)
      expect(expectJsonError(await a.run(['user:list', '--json']), 3)).toMatch(/unreachable/)
      // one line naming the store, for a login and for an audited change alike
      for (const args of [
        ['login:check', 'alice', '--code', '123456'],
        ['user:unlock', 'alice'],
      ]) {
        const plain = await a.run(args)
        expect(plain.code).toBe(3)
        expect(plain.stderr.trim().split('\n'), args[0]).toEqual([expect.stringMatching(/^tfactl: postgresql:\/\/.*database unreachable/)])
      }
    } finally {
      db.pg.start()
    }
    await withinOneStep(30, async () => expectDecision(await check(a, 'alice', {code: await oathtool(secret)}), true, 'code_accepted'))
  })

  it('fails closed within 10 s when the server accepts connections but never answers', async () => {
    const sockets: import('node:net').Socket[] = []
    const silent = createServer((socket) => sockets.push(socket)) // accepts, reads, never answers
    await new Promise<void>((done) => silent.listen(0, '127.0.0.1', done))
    try {
      const {port} = silent.address() as {port: number}
      const started = Date.now()
      const r = await tfactl([
        'login:check',
        'alice',
        '--code',
        '123456',
        '--json',
        '--store',
        `postgresql://postgres@127.0.0.1:${port}/hung`,
        '--key-file',
        join(db.work, 'hung.key'),
      ])
      expect(Date.now() - started).toBeLessThan(10_000)
      expect(expectJsonError(r, 3)).toMatch(/unreachable/)
    } finally {
      for (const s of sockets) s.destroy()
      silent.close()
    }
  })
})
