// The file store's responder logins (src/store/file/group-commit.ts) through the seam a responder
// uses — FileBackend.responder().login — and the one login check (checkLogin), on a real store in
// a temporary directory. Logins started in the same turn of the event loop form one batch.
import {chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {newEnrolment} from '../../src/core/enrol.js'
import {hotp, timeStep} from '../../src/core/totp.js'
import {activate} from '../../src/core/users.js'
import {checkLogin} from '../../src/login/check.js'
import {FileBackend} from '../../src/store/file/backend.js'
import {GroupCommit} from '../../src/store/file/group-commit.js'
import {compactJournal} from '../../src/store/file/journal.js'
import {Store} from '../../src/store/file/store.js'
import {secretWork} from '../../src/store/secrets.js'

const dirs: string[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

/** Waits (a turn of the event loop at a time, 5 s at most) until `done` holds. */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1))
  expect(done()).toBe(true)
}

async function setUp(users: string[], opts: {oathFile?: boolean} = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tfactl-group-'))
  dirs.push(dir)
  const path = join(dir, 'store.json')
  const oathFile = join(dir, 'users.oath')
  const keys = new Map<string, Buffer>()
  await new Store(path).update((doc) => {
    Object.assign(doc.settings, {enabled: true, failDelay: 0, window: 2, maxFailures: 0})
    if (opts.oathFile) Object.assign(doc.settings, {ssh: true, oathFile})
    for (const user of users) {
      const e = newEnrolment(30, 6, Date.now())
      activate(doc, user, e)
      keys.set(user, base32Decode(e.secret)!)
    }
  })
  const backend = new FileBackend(path)
  const responder = backend.responder(() => undefined)
  const login = (user: string, code: string) => checkLogin({login: responder.login}, {user, service: 'ui', method: 'password', code}).then((r) => r.result)
  const code = (user: string, offset: number) => hotp(keys.get(user)!, timeStep(Date.now(), 30) + offset, 6)
  return {path, oathFile, backend, login, code}
}

describe('group commit of a responder’s logins (file store)', () => {
  it('the same user twice in one batch: the second sees the first’s effect', async () => {
    const {login, code} = await setUp(['alice', 'bob'])
    // one batch: the same code twice, then a later step, then an earlier one
    const [a, b, c, d] = await Promise.all([
      login('alice', code('alice', -1)),
      login('alice', code('alice', -1)),
      login('alice', code('alice', 1)),
      login('alice', code('alice', 0)),
    ])
    expect([a.allowed, b.allowed, c.allowed, d.allowed]).toEqual([true, false, true, false])
    expect([b.reason, d.reason]).toEqual(['code_replayed', 'code_replayed'])
    expect((await login('bob', code('bob', 0))).allowed).toBe(true)
  })

  it('a journal compacted by another process between batches: replays still refused, new codes taken', async () => {
    const {path, login, code} = await setUp(['alice', 'bob'])
    expect((await Promise.all([login('alice', code('alice', -1)), login('bob', code('bob', -1))])).map((r) => r.allowed)).toEqual([true, true])
    const epoch = JSON.parse(readFileSync(`${path}.journal`, 'utf8').split('\n')[0]).epoch
    compactJournal(`${path}.journal`, epoch) // what login:check does when the journal has grown (a new file)
    expect((await login('alice', code('alice', -1))).reason).toBe('code_replayed')
    expect((await login('bob', code('bob', 0))).allowed).toBe(true)
    expect((await login('bob', code('bob', 0))).reason).toBe('code_replayed')
  })

  it('a store that cannot be used fails closed: errors, no Accept; usable again, it serves again', async () => {
    const {path, login, code} = await setUp(['alice'])
    expect((await login('alice', code('alice', -1))).allowed).toBe(true)
    chmodSync(`${path}.journal`, 0o644) // others could read it: refused, as every command refuses it
    const results = await Promise.allSettled([login('alice', code('alice', 0)), login('alice', code('alice', 1))])
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    expect(String((results[0] as PromiseRejectedResult).reason.message)).toMatch(/chmod 600/)
    chmodSync(`${path}.journal`, 0o600)
    expect((await login('alice', code('alice', 0))).allowed).toBe(true)
  })

  it('records dropped from memory (a bound on a store of many users) keep their replay state and failure counts', async () => {
    const users = ['u1', 'u2', 'u3', 'u4', 'u5']
    const {path, code} = await setUp(users)
    const commits = new GroupCommit(new Store(path), 2) // at most two records decoded at a time
    const login = (user: string, c: string) =>
      checkLogin({login: (u, fn) => commits.login(u, fn)}, {user, service: 'ui', method: 'password', code: c}).then((r) => r.result)
    for (const user of users) expect((await login(user, code(user, -1))).allowed).toBe(true)
    expect((await login('u1', '000000')).allowed).toBe(false) // a failure counted, u1 decoded again
    for (const user of users) expect((await login(user, code(user, -1))).reason).toBe('code_replayed') // u1 dropped from memory again
    expect((await login('u1', '000001')).allowed).toBe(false) // the second failure, counted on the first
    expect(await new Store(path).login('u1', (doc) => doc.users.get('u1')?.failures)).toBe(2)
    for (const user of users) expect((await login(user, code(user, 0))).allowed).toBe(true)
    expect(await new Store(path).login('u1', (doc) => doc.users.get('u1')?.failures)).toBe(0) // reset by the accepted code
  })

  it('a store made readable by others, or swapped for a link, while the responder holds it open: refused at the next batch', async () => {
    const {path, login, code} = await setUp(['alice'])
    expect((await login('alice', code('alice', -1))).allowed).toBe(true) // the store known, held open
    chmodSync(path, 0o644)
    const refused = await Promise.allSettled([login('alice', code('alice', 0))])
    expect(refused[0].status).toBe('rejected')
    expect(String((refused[0] as PromiseRejectedResult).reason.message)).toMatch(/chmod 600/)
    chmodSync(path, 0o600)
    expect((await login('alice', code('alice', 0))).allowed).toBe(true)
    renameSync(path, `${path}.real`)
    symlinkSync(`${path}.real`, path)
    const linked = await Promise.allSettled([login('alice', code('alice', 1))])
    expect(linked[0].status).toBe('rejected')
    expect(String((linked[0] as PromiseRejectedResult).reason.message)).toMatch(/link/)
  })

  it('records are decoded ahead, between requests: later logins open no secret; a rewritten store is decoded ahead again, with its new secrets', async () => {
    const users = Array.from({length: 300}, (_, i) => `u${String(i).padStart(3, '0')}`)
    const {path, code} = await setUp(users)
    const commits = new GroupCommit(new Store(path))
    const login = (user: string, c: string) =>
      checkLogin({login: (u, fn) => commits.login(u, fn)}, {user, service: 'ui', method: 'password', code: c}).then((r) => r.result)
    expect(commits.stats.preloaded).toBe(0) // nothing read before the first login
    expect((await login('u000', code('u000', -1))).allowed).toBe(true)
    await until(() => commits.stats.preloaded === users.length)
    const opened = secretWork.decrypted
    const some = users.slice(1, 60)
    expect((await Promise.all(some.map((u) => login(u, code(u, -1))))).every((r) => r.allowed)).toBe(true)
    expect(secretWork.decrypted).toBe(opened) // every record was open already
    expect((await login('u001', code('u001', -1))).reason).toBe('code_replayed')

    // another process renews u001: a new store file, read at the next batch and decoded ahead again
    const fresh = newEnrolment(30, 6, Date.now())
    await new Store(path).update((doc) => activate(doc, 'u001', fresh))
    const newKey = base32Decode(fresh.secret)!
    expect((await login('u002', code('u002', 0))).allowed).toBe(true)
    await until(() => commits.stats.preloaded === 2 * users.length)
    expect((await login('u001', code('u001', 0))).allowed).toBe(false) // the old secret's code
    expect((await login('u001', hotp(newKey, timeStep(Date.now(), 30), 6))).allowed).toBe(true)
  })

  it('decoding ahead stops at the bound on records kept', async () => {
    const users = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6']
    const {path, code} = await setUp(users)
    const commits = new GroupCommit(new Store(path), 3)
    const result = await checkLogin({login: (u, fn) => commits.login(u, fn)}, {user: 'a6', service: 'ui', method: 'password', code: code('a6', -1)})
    expect(result.result.allowed).toBe(true)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(commits.stats.preloaded).toBe(2) // a6, decoded by its login, and two more: three kept
  })

  it("with a pam_oath users file, logins keep it in step (the per-login path): a code used through the responder is pam_oath's last one too", async () => {
    const {oathFile, login, code} = await setUp(['alice', 'bob'], {oathFile: true})
    const before = readFileSync(oathFile, 'utf8')
    const used = code('alice', 0)
    expect((await Promise.all([login('alice', used), login('alice', used), login('bob', code('bob', 0))])).map((r) => r.allowed)).toEqual([true, false, true])
    const after = readFileSync(oathFile, 'utf8')
    expect(after).not.toBe(before)
    expect(after.split('\n').find((l) => l.includes('\talice\t'))).toContain(used) // pam_oath's LASTOTP field
    expect((await login('alice', used)).reason).toBe('code_replayed')
  })
})
