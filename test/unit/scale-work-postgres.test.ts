// A one-user change reads one user's row, on the database store too. Nothing here is timed: the
// commands run in this process (the code path users hit, through the seam) and the test counts
// the rows the store fetched (pgWork) and the secrets it opened and sealed (secretWork), at two
// sizes, so that work growing with the number of users fails it.
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it, vi} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {newEnrolment} from '../../src/core/enrol.js'
import {hotp, timeStep} from '../../src/core/totp.js'
import {activate} from '../../src/core/users.js'
import Status from '../../src/commands/twofactor/status.js'
import Bypass from '../../src/commands/user/bypass.js'
import List from '../../src/commands/user/list.js'
import Generate from '../../src/commands/user/recovery/generate.js'
import Confirm from '../../src/commands/user/secret/confirm.js'
import Renew from '../../src/commands/user/secret/renew.js'
import Unset from '../../src/commands/user/secret/unset.js'
import Unlock from '../../src/commands/user/unlock.js'
import {pgWork, PgStore} from '../../src/store/postgres/store.js'
import {secretWork} from '../../src/store/secrets.js'
import {ROOT} from '../helpers/cli.js'
import {type PgServer, startPostgres} from '../helpers/postgres.js'

let pg: PgServer
let dir: string
const sudoUser = process.env.SUDO_USER
beforeAll(async () => {
  delete process.env.SUDO_USER // root acting on users, as the bench runs them
  pg = await startPostgres()
  dir = mkdtempSync(join(tmpdir(), 'tfactl-pgwork-'))
})
afterAll(() => {
  if (sudoUser !== undefined) process.env.SUDO_USER = sudoUser
  pg?.destroy()
  if (dir) rmSync(dir, {recursive: true, force: true})
})

const name = (i: number) => `u${String(i).padStart(6, '0')}`
const codeOf = (secret: string) => hotp(base32Decode(secret)!, timeStep(Date.now(), 30), 6)

/** A database of `n` users with secrets (2FA on, no fail delay), and the flags that name it. */
async function databaseOf(n: number) {
  const url = await pg.database(`work${n}`)
  const keyFile = join(dir, `key${n}`, 'tfactl.key')
  const store = new PgStore(url, {keyFile})
  try {
    await store.update((doc) => {
      Object.assign(doc.settings, {enabled: true, failDelay: 0})
      for (let i = 0; i < n; i++) activate(doc, name(i), newEnrolment(30, 6, Date.now()))
    })
  } finally {
    await store.close()
  }
  return {url, keyFile, flags: ['--store', url, '--key-file', keyFile, '--json']}
}

/** What `fn` fetched from the database, opened and sealed. */
async function work<T>(fn: () => Promise<T>) {
  const before = {rows: pgWork.rowsRead, ...secretWork}
  const result = await fn()
  return {result, rows: pgWork.rowsRead - before.rows, decrypted: secretWork.decrypted - before.decrypted, encrypted: secretWork.encrypted - before.encrypted}
}

describe.each([1_000, 10_000])('the database store, %i users', (n) => {
  let db: Awaited<ReturnType<typeof databaseOf>>
  beforeAll(async () => {
    db = await databaseOf(n)
  }, 120_000)
  const run = async <T>(command: {run(argv: string[], root: string): Promise<T>}, args: string[]) => {
    const quiet = vi.spyOn(console, 'log').mockImplementation(() => {}) // what it prints is the returned result
    try {
      return await work(() => command.run([...args, ...db.flags], ROOT))
    } finally {
      quiet.mockRestore()
    }
  }

  it("renew, bypass, unlock, recovery:generate and unset of one user fetch that user's row only", async () => {
    const target = name(n / 2)
    const renew = await run(Renew, [target, '--qr', 'none'])
    expect(renew).toMatchObject({rows: 1, decrypted: 1, encrypted: 1})
    expect((renew.result as {users: Array<{user: string; changed: boolean}>}).users).toMatchObject([{user: target, changed: true}])
    expect(await run(Bypass, [target])).toMatchObject({rows: 1, decrypted: 1, encrypted: 0})
    expect(await run(Unlock, [target])).toMatchObject({rows: 1, decrypted: 1, encrypted: 0, result: {user: target, changed: false}})
    const codes = await run(Generate, [target, '--count', '3'])
    expect(codes).toMatchObject({rows: 1, decrypted: 1, encrypted: 0})
    expect((codes.result as {codes: string[]}).codes).toHaveLength(3)
    expect(await run(Unset, [target, '--yes'])).toMatchObject({rows: 1, decrypted: 1, encrypted: 0, result: {user: target, changed: true}})
    // a user the store does not know: no row at all, and a bypass creates that one row
    expect(await run(Unlock, ['nobody'])).toMatchObject({rows: 0, decrypted: 0, result: {changed: false}})
    expect(await run(Bypass, ['newcomer'])).toMatchObject({rows: 0, decrypted: 0, encrypted: 0})
  }, 120_000)

  it('a pending secret is created and confirmed reading one row each time', async () => {
    const target = name(3)
    const pending = await run(Renew, [target, '--pending', '--qr', 'none'])
    expect(pending).toMatchObject({rows: 1, encrypted: 1})
    const secret = (pending.result as {users: Array<{secret: string}>}).users[0].secret
    expect(await run(Confirm, [target, '--code', codeOf(secret)])).toMatchObject({rows: 1, decrypted: 2, result: {user: target, changed: true}})
  }, 120_000)

  it('refuses a one-user change that touches another user, and writes nothing', async () => {
    const store = new PgStore(db.url, {keyFile: db.keyFile})
    try {
      const before = (await store.read()).users.get(name(9))
      await expect(
        store.updateUser(name(8), (doc) => {
          doc.users.get(name(8))!.failures = 3
          doc.users.set(name(9), {...doc.users.get(name(8))!})
        }),
      ).rejects.toThrow(/also changed u000009/)
      const after = await store.read()
      expect(after.users.get(name(9))).toEqual(before)
      expect(after.users.get(name(8))!.failures).toBe(0)
    } finally {
      await store.close()
    }
  }, 120_000)

  it('twofactor:status counts in the database: no row fetched, no secret opened', async () => {
    const status = await run(Status, [])
    expect(status).toMatchObject({rows: 0, decrypted: 0, encrypted: 0})
    expect((status.result as {users: {total: number; configured: number}}).users).toEqual({total: n + 1, configured: n - 1}) // + newcomer; − the unset user
  }, 120_000)

  it('counts alike without the users index, which the next whole-store update creates, unless its role may not', async () => {
    const dbName = `work${n}`
    const psql = (sql: string, role = 'postgres') => pg.tool('psql', ['-d', dbName, '-U', role, '-qAt', '-c', sql]).trim()
    const indexed = () => psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'tfactl_users_no_secret'")
    const counts = async () => (await run(Status, [])).result as {users: {total: number; configured: number}}
    expect(indexed()).toBe('1') // a new database has it from the start
    const expected = (await counts()).users
    expect(expected).toEqual({total: n + 1, configured: n - 1})
    psql('DROP INDEX tfactl_users_no_secret') // a database made before the index
    expect((await counts()).users).toEqual(expected)
    // a role that may change the rows but does not own the table cannot create it: the update still goes through
    const role = `tfactl_user_${n}`
    psql(
      `CREATE ROLE ${role} LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${role}`,
    )
    try {
      const asRole = new PgStore(db.url.replace('postgres@', `${role}@`), {keyFile: db.keyFile})
      try {
        await asRole.update((doc) => {
          doc.settings.window = 2
        })
        expect((await asRole.summary!()).settings.window).toBe(2)
      } finally {
        await asRole.close()
      }
      expect(indexed()).toBe('0')
    } finally {
      psql(`DROP OWNED BY ${role}; DROP ROLE ${role}`)
    }
    const owner = new PgStore(db.url, {keyFile: db.keyFile})
    try {
      await owner.update((doc) => {
        doc.settings.window = 1
      })
    } finally {
      await owner.close()
    }
    expect(indexed()).toBe('1')
    expect((await counts()).users).toEqual(expected)
  }, 120_000)

  it('user:list reads every user, a bounded batch at a time', async () => {
    const store = new PgStore(db.url, {keyFile: db.keyFile})
    const batches: number[] = []
    try {
      await store.eachUser((batch) => batches.push(batch.length))
    } finally {
      await store.close()
    }
    expect(batches.reduce((a, b) => a + b, 0)).toBe(n + 1)
    expect(Math.max(...batches)).toBeLessThanOrEqual(2000)
    const list = await run(List, [])
    expect(list.rows).toBe(n + 1)
    const users = (list.result as {users: Array<{user: string}>}).users
    expect(users.map((u) => u.user)).toEqual([...users.map((u) => u.user)].sort())
    expect(users).toHaveLength(n + 1)
  }, 120_000)
})
