// What the hosts of a fleet trust, tried as a hostile local user and as whoever can answer at
// the database's address: the config file, the settings in the database (authenticated with the
// key), the password sent to a server, a URL's password in messages, a stalled backend, a restore
// from a path another user can swap, the environment under sudo, and STIG mode without anyone
// able to manage the host.
import {execFileSync} from 'node:child_process'
import {chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, symlinkSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {hashCodes} from '../../src/core/codes.js'
import {resolveStore} from '../../src/store/config.js'
import {oathtool, tempStore, tfactl} from '../helpers/cli.js'
import {startFakePg} from '../helpers/fakepg.js'
import {mallory} from '../helpers/mallory.js'
import {check, dbFleets, enable, expectDecision, expectJsonError, renew, withinOneStep} from './support.js'

/** Fresh databases `trustN`; host A creates the key, `hostB()` copies it (how a host joins). */
const db = dbFleets('trust')
const {host, fleet} = db

/** A port nothing listens on. */
const closedPort = (): Promise<number> =>
  new Promise((done) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const {port} = s.address() as {port: number}
      s.close(() => done(port))
    })
  })

describe('settings the key did not authenticate', () => {
  it('refuses settings changed in the database by someone without the key, on every host (exit 3, never allowed)', async () => {
    const {a, hostB, psql} = await fleet()
    await enable(a)
    await renew(a, 'alice')
    const b = hostB()
    expectDecision(await check(b, 'alice'), false, 'code_required')
    psql(`UPDATE tfactl_settings SET settings = jsonb_set(settings, '{enabled}', 'false')`)
    for (const h of [a, b]) {
      expect(expectJsonError(await check(h, 'alice'), 3)).toMatch(/not written with the key/)
      expect(expectJsonError(await h.run(['user:list', '--json']), 3)).toMatch(/not written with the key/)
      expectJsonError(await h.run(['twofactor:disable', '--json']), 3)
    }
    psql(`UPDATE tfactl_settings SET settings = jsonb_set(settings, '{enabled}', 'true')`) // put back: accepted again
    expectDecision(await check(a, 'alice'), false, 'code_required')
    for (const field of [`'{window}', '10'`, `'{maxFailures}', '0'`, `'{lockout}', '1'`, `'{stig}', 'true'`]) {
      psql(`UPDATE tfactl_settings SET settings = jsonb_set(settings, ${field})`)
      expectJsonError(await check(a, 'alice', {code: '123456'}), 3)
      psql(`UPDATE tfactl_settings SET settings = jsonb_set(settings, ${field.replace(/'[^']*'$/, "'null'")})`)
    }
  })

  it("refuses a user's row changed by someone without the key: a bypass code of their own, a lifted lockout (exit 3)", async () => {
    const {a, psql} = await fleet()
    await enable(a, '--max-failures', '1')
    await renew(a, 'alice')
    expectDecision(await check(a, 'alice', {code: '000000'}), false, 'code_invalid')
    expectDecision(await check(a, 'alice', {code: '000000'}), false, 'locked_out')
    const {salt, hashes} = hashCodes(['ABCD-EFGH-JKMN'])
    const bypass = JSON.stringify({salt, hash: hashes[0], expiresAt: new Date(Date.now() + 3600_000).toISOString()})
    psql(`UPDATE tfactl_users SET data = jsonb_set(jsonb_set(data, '{bypass}', '${bypass}'), '{lockedUntil}', 'null') WHERE name = 'alice'`)
    const r = await check(a, 'alice', {code: 'ABCD-EFGH-JKMN'})
    expect(expectJsonError(r, 3)).toMatch(/row of user "alice" was not written with the key/)
    expect(expectJsonError(await a.run(['user:list', '--json']), 3)).toMatch(/row of user "alice"/)
  })

  it('refuses, on a host holding a key, a database whose key id is empty or missing (a server answering in its place)', async () => {
    const {a, psql, name, keys} = await fleet()
    await enable(a)
    await renew(a, 'alice')
    psql(`UPDATE tfactl_settings SET key_id = '', settings = jsonb_set(settings, '{enabled}', 'false')`)
    expect(expectJsonError(await check(a, 'alice'), 3)).toMatch(/key/)
    psql(`DELETE FROM tfactl_users; UPDATE tfactl_settings SET key_id = NULL, mac = NULL`)
    const r = await check(a, 'alice')
    expect(expectJsonError(r, 3)).toMatch(/names no key, but this host holds/)
    expect(r.stdout).not.toMatch(/"allowed": true/)
    // another database altogether (what a local user serves while PostgreSQL is down): the same
    const other = host(await db.pg.database(`empty${name}`), join(keys, 'a', 'tfactl.key'))
    expect(expectJsonError(await check(other, 'alice'), 3)).toMatch(/names no key/)
  })

  it('upgrades an existing fleet with store:rotate-key: until then a key holder refuses, naming it', async () => {
    const {a, hostB, keys, psql} = await fleet()
    await enable(a)
    const {secret} = await renew(a, 'alice')
    const b = hostB()
    psql('UPDATE tfactl_settings SET mac = NULL') // as written by a tfactl before the settings were authenticated
    expect(expectJsonError(await check(a, 'alice'), 3)).toContain('tfactl store:rotate-key')
    expect(expectJsonError(await a.run(['twofactor:enable', '--window', '2', '--json']), 3)).toContain('tfactl store:rotate-key')
    const doctor = await a.run(['doctor', '--json'])
    expect(doctor.json.checks).toContainEqual(expect.objectContaining({check: 'settings', status: 'finding', fix: 'tfactl store:rotate-key'}))
    const rotated = await a.run(['store:rotate-key', '--json'])
    expect(rotated.code, rotated.stderr).toBe(0)
    copyFileSync(join(keys, 'a', 'tfactl.key'), join(keys, 'b', 'tfactl.key'))
    await withinOneStep(30, async () => expectDecision(await check(b, 'alice', {code: await oathtool(secret)}), true, 'code_accepted'))
  })

  it('sets up a new database without a key; afterwards a host without the key cannot change the settings', async () => {
    const {a, keys, url} = await fleet()
    expect(existsSync(join(keys, 'a', 'tfactl.key'))).toBe(false)
    await enable(a) // first set-up: the settings create the key
    expect(existsSync(join(keys, 'a', 'tfactl.key'))).toBe(true)
    expectDecision(await check(a, 'alice'), true, 'no_secret', true)
    const keyless = host(url, join(keys, 'none', 'tfactl.key'))
    expect(expectJsonError(await keyless.run(['twofactor:disable', '--json']), 3)).toMatch(/missing/)
    expect(expectJsonError(await check(keyless, 'alice'), 3)).toMatch(/missing/)
  })
})

describe('a server that asks for the password', () => {
  it.each(['cleartext', 'md5'] as const)('is not sent it (%s) over a connection without TLS: exit 3', async (auth) => {
    const fake = await startFakePg(auth)
    try {
      for (const [url, env] of [
        [`postgresql://tfactl@127.0.0.1:${fake.port}/db`, {PGPASSWORD: 'root-pgpassword'}],
        [`postgresql://tfactl:url-password@127.0.0.1:${fake.port}/db`, {}],
      ] as const) {
        const started = fake.startups
        const r = await tfactl(['login:check', 'alice', '--json', '--store', url, '--key-file', join(db.work, 'nokey', 'tfactl.key')], {env})
        expect(expectJsonError(r, 3)).toMatch(/without TLS; refused/)
        expect(fake.startups).toBeGreaterThan(started)
      }
      expect(fake.passwords).toEqual([])
    } finally {
      await fake.close()
    }
  })

  it('doctor names a TCP URL without sslmode=verify-full; the Unix socket is fine', async () => {
    const {a, name, keys} = await fleet()
    await enable(a)
    const tcp = await a.run(['doctor', '--json'])
    expect(tcp.json.checks).toContainEqual(expect.objectContaining({check: 'database connection', status: 'finding'}))
    expect(tcp.json.checks.find((c: any) => c.check === 'database connection').message).toMatch(/verify-full/)
    const socket = host(`postgresql://postgres@/${name}?host=${db.pg.dir}&port=${db.pg.port}`, join(keys, 'a', 'tfactl.key'))
    const viaSocket = await socket.run(['doctor', '--json'])
    expect(viaSocket.json.checks).toContainEqual(expect.objectContaining({check: 'database connection', status: 'ok'}))
  })
})

describe('limits', () => {
  it('holds a login no longer than 10 s when the backend accepts it and then stalls', async () => {
    const fake = await startFakePg('trust')
    try {
      const started = Date.now()
      const r = await tfactl([
        'login:check',
        'alice',
        '--code',
        '123456',
        '--json',
        '--store',
        `postgresql://postgres@127.0.0.1:${fake.port}/stalled`,
        '--key-file',
        join(db.work, 'nokey', 'tfactl.key'),
      ])
      expect(Date.now() - started).toBeLessThan(10_000)
      expect(expectJsonError(r, 3)).toMatch(/unreachable/)
      expect(fake.startups).toBe(1)
    } finally {
      await fake.close()
    }
  })

  it('never shows any part of a URL password, however it is written', async () => {
    const port = await closedPort()
    const cases: [string, string[]][] = [
      [`postgresql://u:s3cr/et@127.0.0.1:${port}/db`, ['s3cr', '/et@']],
      [`postgresql://u:p@ss@127.0.0.1:${port}/db`, ['p@ss', 'ss@']],
      [`postgresql://u:hash#tag@127.0.0.1:${port}/db`, ['hash', 'tag@']],
      [`postgresql://u:a?b@127.0.0.1:${port}/db`, ['a?b', '?b@']],
      [`postgresql://127.0.0.1:${port}/db?password=qu3ry-secret`, ['qu3ry']],
    ]
    for (const [url, fragments] of cases)
      for (const args of [['login:check', 'alice'], ['user:list'], ['doctor']]) {
        const r = await tfactl([...args, '--json', '--store', url, '--key-file', join(db.work, 'nokey', 'tfactl.key')])
        expect(r.code, `${url}: ${r.stdout}${r.stderr}`).toBeGreaterThan(0)
        for (const f of fragments) expect(r.stdout + r.stderr, url).not.toContain(f)
      }
  })
})

describe('the config file', () => {
  it('is refused (exit 3, naming it) when another user owns or can write it, it is a link, or a directory above is theirs', async () => {
    const {uid} = mallory()
    const store = tempStore()
    try {
      await enable(store)
      const mine = mkdtempSync(join(db.work, 'conf-'))
      const theirs = mkdtempSync(join(db.work, 'conf-'))
      chmodSync(theirs, 0o755)
      chownSync(theirs, uid, -1)
      const write = (path: string) => writeFileSync(path, JSON.stringify({store: store.path}), {mode: 0o644})
      const good = join(mine, 'config.json')
      write(good)
      const list = (config: string) => tfactl(['twofactor:status', '--json'], {env: {TFACTL_CONFIG: config}})
      expect((await list(good)).json).toMatchObject({enabled: true})
      const owned = join(mine, 'owned.json')
      write(owned)
      chownSync(owned, uid, -1)
      const writable = join(mine, 'writable.json')
      write(writable)
      chmodSync(writable, 0o666)
      const link = join(mine, 'link.json')
      symlinkSync(good, link)
      const inTheirs = join(theirs, 'config.json')
      write(inTheirs)
      for (const config of [owned, writable, link, inTheirs]) expect(expectJsonError(await list(config), 3)).toContain(config)
    } finally {
      store.cleanup()
    }
  })
})

describe('store:restore --from', () => {
  it('is refused when a directory on the way belongs to another user, or it is a link; nothing is restored', async () => {
    const {uid} = mallory()
    const s = tempStore()
    try {
      await enable(s)
      await renew(s, 'alice')
      await renew(s, 'alice') // a .bak to restore
      const before = s.bytes()
      const theirs = mkdtempSync(join(db.work, 'restore-'))
      chmodSync(theirs, 0o755)
      chownSync(theirs, uid, -1)
      copyFileSync(`${s.path}.bak`, join(theirs, 'backup')) // root's genuine backup, in their directory
      const r = await s.run(['store:restore', '--from', join(theirs, 'backup'), '--json'])
      expect(expectJsonError(r, 3)).toContain(theirs)
      const mine = mkdtempSync(join(db.work, 'restore-'))
      symlinkSync(`${s.path}.bak`, join(mine, 'link'))
      expect(expectJsonError(await s.run(['store:restore', '--from', join(mine, 'link'), '--json']), 3)).toMatch(/symbolic link/)
      expect(s.bytes()).toEqual(before)
      copyFileSync(`${s.path}.bak`, join(mine, 'backup'))
      const ok = await s.run(['store:restore', '--from', join(mine, 'backup'), '--json'])
      expect(ok.code, ok.stderr).toBe(0)
    } finally {
      s.cleanup()
    }
  })
})

describe('the environment under sudo', () => {
  it('does not choose the store, the config file, the key file or the connection (a warning names what was ignored)', () => {
    const env: NodeJS.ProcessEnv = {
      SUDO_USER: 'alice',
      TFACTL_STORE: '/home/alice/evil.json',
      TFACTL_CONFIG: '/home/alice/config.json',
      TFACTL_KEY_FILE: '/home/alice/key',
      PGHOST: '127.0.0.1',
      PGPORT: '5999',
      PGPASSFILE: '/home/alice/.pgpass',
    }
    const r = resolveStore({store: join(db.work, 'store.json')}, env, 0)
    expect(r.spec).toBe(join(db.work, 'store.json'))
    expect(r.keyFile).toBeUndefined()
    expect(r.ignored).toEqual(['PGHOST', 'PGPASSFILE', 'PGPORT', 'TFACTL_CONFIG', 'TFACTL_KEY_FILE', 'TFACTL_STORE'])
    expect(Object.keys(env)).toEqual(['SUDO_USER'])
    const plain = {TFACTL_STORE: join(db.work, 'env.json')}
    expect(resolveStore({}, plain, 0)).toMatchObject({spec: join(db.work, 'env.json'), ignored: []})
  })

  it('runs a self-service command on the flags, warning that the environment was ignored', async () => {
    const s = tempStore()
    try {
      await enable(s)
      const env = {SUDO_USER: 'nobody', TFACTL_CONFIG: join(db.work, 'absent', 'config.json'), TFACTL_STORE: join(db.work, 'absent', 'store.json')}
      const asRoot = await s.run(['twofactor:status', '--json'], {env: {TFACTL_CONFIG: env.TFACTL_CONFIG}})
      expectJsonError(asRoot, 2) // without sudo, the named config file is used (and is missing)
      const r = await tfactl(['user:secret:renew', '--qr', 'none', '--json', '--store', s.path], {env})
      expect(r.code, r.stderr).toBe(0)
      expect(r.json.users).toMatchObject([{user: 'nobody'}])
      expect(r.stderr).toMatch(/under sudo the environment does not choose the store: TFACTL_CONFIG, TFACTL_STORE ignored/)
    } finally {
      s.cleanup()
    }
  })
})

describe('STIG mode', () => {
  it('is refused (exit 2, nothing changed) until root or a member of the admin group has an active secret', async () => {
    const s = tempStore()
    const admin = `tfactl-adm${process.pid % 10000}`
    try {
      await enable(s)
      await renew(s, 'alice') // not an administrator
      await renew(s, 'root', '--pending') // not yet working
      const before = s.bytes()
      const refused = expectJsonError(await s.run(['twofactor:enable', '--stig', '--json']), 2)
      expect(refused).toMatch(/root or a member of the admin group \(sudo, wheel, admin\)/)
      expect(s.bytes()).toEqual(before)
      execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '-G', 'sudo', admin], {stdio: 'ignore'})
      await renew(s, admin)
      expect(await enable(s, '--stig')).toMatchObject({stig: true, ssh: true})
      expectDecision(await check(s, 'bob'), false, 'stig_requires_2fa')
    } finally {
      try {
        execFileSync('userdel', [admin], {stdio: 'ignore'})
      } catch {
        // not created
      }
      s.cleanup()
    }
  })
})
