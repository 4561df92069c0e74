// The emergency paths without sshd: twofactor:disable that opens no secret, store:restore, and
// the store a caller gets when none is named (a lost store, the system store).
import {spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {chmodSync, closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {sidecars} from '../../src/store/paths.js'
import {ROOT, tempStore} from '../helpers/cli.js'
import {enable, expectJsonError, renew, type TempStore, writeStore} from './support.js'

let stores: TempStore[] = []
const newStore = () => {
  const s = tempStore()
  stores.push(s)
  return s
}
afterEach(() => {
  for (const s of stores) s.cleanup()
  stores = []
})
const keyOf = (s: TempStore) => sidecars(s.path).key

describe('twofactor:disable without the key', () => {
  it('keeps the journal valid: the epoch is unchanged, so a lockout recorded by a login still holds', async () => {
    const s = newStore()
    await enable(s, '--max-failures', '1')
    await renew(s, 'alice')
    await renew(s, 'bob')
    expect((await s.run(['login:check', 'alice', '--code', '000000', '--json'])).code).toBe(1)
    const journal = readFileSync(`${s.path}.journal`)
    const epoch = JSON.parse(s.bytes()!.toString().split('\n')[0] + '}}').journal
    const key = readFileSync(keyOf(s))
    rmSync(keyOf(s))

    const r = await s.run(['twofactor:disable', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({enabled: false, changed: true, sealedOnly: true})
    expect(readFileSync(`${s.path}.journal`)).toEqual(journal)
    expect(JSON.parse(s.bytes()!.toString().split('\n')[0] + '}}').journal).toBe(epoch)

    writeFileSync(keyOf(s), key, {mode: 0o600})
    const list = await s.run(['user:list', '--json'])
    expect(list.json.users.find((u: any) => u.user === 'alice')).toMatchObject({lockedOut: true})
    expect(list.json.users.find((u: any) => u.user === 'bob')).toMatchObject({lockedOut: false})
  })

  it("rewrites a hand-edited store (not one user per line) in tfactl's layout, sealed secrets carried as they are", async () => {
    const s = newStore()
    await enable(s)
    await renew(s, 'bob')
    await renew(s, 'alice')
    const doc = JSON.parse(s.bytes()!.toString())
    writeStore(s, JSON.stringify({users: doc.users, ...doc})) // one line, users first
    rmSync(keyOf(s))
    const r = await s.run(['twofactor:disable', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const text = s.bytes()!.toString()
    expect(text.split('\n')[0]).toMatch(/"users":\{$/)
    expect(
      text
        .split('\n')
        .slice(1, 3)
        .map((l) => l.slice(0, 7)),
    ).toEqual(['"alice"', '"bob":{'])
    const after = JSON.parse(text)
    expect(after.settings.enabled).toBe(false)
    expect(after.users).toEqual(doc.users)
  })

  it('a corrupt store: exit 3, nothing written, the message names store:restore', async () => {
    const s = newStore()
    await enable(s)
    await enable(s, '--window', '2') // a second write: .bak
    writeStore(s, '{"version":1,"settings":')
    rmSync(keyOf(s), {force: true})
    const message = expectJsonError(await s.run(['twofactor:disable', '--json']), 3)
    expect(message).toContain(`${s.path}.bak`)
    expect(message).toContain('tfactl store:restore')
    expect(s.bytes()!.toString()).toBe('{"version":1,"settings":')
  })
})

describe.skipIf(process.getuid?.() !== 0)('twofactor:disable --force (as root)', () => {
  it("takes over only a file that reads as a pam_oath users file, never one of the store's own (exit 2, nothing changed)", async () => {
    const s = newStore()
    await enable(s)
    await renew(s, 'alice')
    const passwd = join(s.dir, 'passwd')
    writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\n', {mode: 0o644})
    const before = s.bytes()
    expect(expectJsonError(await s.run(['twofactor:disable', '--force', '--oath-file', passwd, '--json']), 2)).toMatch(/not a pam_oath users file/)
    expect(readFileSync(passwd, 'utf8')).toBe('root:x:0:0:root:/root:/bin/bash\n')
    expectJsonError(await s.run(['twofactor:disable', '--force', '--oath-file', keyOf(s), '--json']), 2)
    expect(s.bytes()).toEqual(before)
  })

  it('leaves a pam_oath lock that a process has open, names that process, and changes nothing (exit 3)', async () => {
    const s = newStore()
    const oath = join(s.dir, 'users.oath')
    await enable(s, '--ssh', '--oath-file', oath)
    await renew(s, 'alice')
    writeFileSync(`${oath}.lock`, '', {mode: 0o600})
    const fd = openSync(`${oath}.lock`, 'r')
    const holder = spawn('sleep', ['60'], {stdio: [fd, 'ignore', 'ignore']})
    try {
      await new Promise((done) => holder.once('spawn', done))
      closeSync(fd) // the sleep alone has it open
      const before = s.bytes()
      const usersFile = readFileSync(oath)
      const message = expectJsonError(await s.run(['twofactor:disable', '--force', '--json']), 3)
      expect(message).toContain(`pid ${holder.pid} (sleep 60)`)
      expect(existsSync(`${oath}.lock`)).toBe(true)
      expect(s.bytes()).toEqual(before)
      expect(readFileSync(oath)).toEqual(usersFile)
    } finally {
      holder.kill('SIGKILL')
    }
  })
})

describe('store:restore', () => {
  it('exits 3 when there is no backup, and 2 when --from names the store itself', async () => {
    const s = newStore()
    await enable(s)
    const before = s.bytes()
    expect(expectJsonError(await s.run(['store:restore', '--json']), 3)).toMatch(/no backup/)
    expectJsonError(await s.run(['store:restore', '--from', s.path, '--json']), 2)
    expect(s.bytes()).toEqual(before)
  })

  it('reports the users whose secrets the key cannot open, and still restores', async () => {
    const other = newStore()
    await enable(other)
    await renew(other, 'alice')
    const s = newStore()
    await enable(s)
    const r = await s.run(['store:restore', '--from', other.path, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({restored: true, from: other.path, undecryptable: ['alice'], users: 1, enabled: true})
    const aside = r.json.movedAside.filter((p: string) => p.startsWith(`${s.path}.broken-`))
    expect(aside).toHaveLength(1)
    expect(readFileSync(aside[0], 'utf8')).toContain('"enabled":true')
    expect(r.json.movedAside.filter((p: string) => p.startsWith(`${s.path}.journal.broken-`))).toHaveLength(1) // of another epoch
    expect(s.bytes()).toEqual(other.bytes())
  })
})

describe('a lost store', () => {
  it('is not a new empty one: every command exits 3 naming .bak, or --force when there is none', async () => {
    const s = newStore()
    await renew(s, 'root') // STIG mode needs an administrator with a secret
    await enable(s, '--stig')
    rmSync(`${s.path}.bak`) // the enrolment made the second write: without .bak, a journal and a key are the only traces
    rmSync(s.path)
    for (const args of [['login:check', 'alice'], ['store:check'], ['twofactor:enable'], ['user:secret:renew', 'alice', '--qr', 'none']]) {
      const message = expectJsonError(await s.run([...args, '--json']), 3)
      expect(message).toContain('missing')
      expect(message).toContain('twofactor:disable --force')
    }
    expect(s.bytes()).toBeUndefined()
  })

  it('a store never written is still a new one (the lock and audit log of a read do not count)', async () => {
    const s = newStore()
    expect((await s.run(['login:check', 'alice', '--json'])).json).toMatchObject({allowed: true, reason: 'twofactor_disabled'})
    expect((await s.run(['store:check', '--json'])).code).toBe(0)
  })
})

describe('the default store of a non-root caller', () => {
  const probe = (system: string) =>
    spawnSync(
      'runuser',
      [
        '-u',
        'nobody',
        '--',
        process.execPath,
        '--input-type=module',
        '-e',
        `import(${JSON.stringify(join(ROOT, 'dist/store/paths.js'))}).then((m) => { try { console.log(m.defaultStorePath({HOME: '/nonexistent'}, process.getuid(), ${JSON.stringify(system)})) } catch (e) { console.log('exit', e.exit, e.message) } })`,
      ],
      {encoding: 'utf8'},
    )
  const canRunuser = process.getuid?.() === 0 && spawnSync('runuser', ['-u', 'nobody', '--', 'true']).status === 0

  it.skipIf(!canRunuser)('is the system store when it exists and can be read; exit 4 when it cannot; the private one only when there is none', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfactl-system-'))
    try {
      chmodSync(dir, 0o755)
      const system = join(dir, 'store.json')
      expect(probe(system).stdout.trim()).toBe('/nonexistent/.local/state/tfactl/store.json')
      writeFileSync(system, '{}', {mode: 0o644})
      chmodSync(system, 0o644)
      expect(probe(system).stdout.trim()).toBe(system)
      chmodSync(system, 0o600)
      expect(probe(system).stdout.trim()).toMatch(/^exit 4 the system store .* cannot read it/)
      mkdirSync(join(dir, 'hidden'), {mode: 0o700})
      cpSync(system, join(dir, 'hidden', 'store.json'))
      expect(probe(join(dir, 'hidden', 'store.json')).stdout.trim()).toMatch(/^exit 4 /)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })

  it('a random key file beside a new store is enough to refuse reading it as new', async () => {
    const s = newStore()
    mkdirSync(dirname(s.path), {recursive: true, mode: 0o700})
    writeFileSync(keyOf(s), randomBytes(32), {mode: 0o600})
    expectJsonError(await s.run(['login:check', 'alice', '--json']), 3)
  })
})
