// The store seam's contract (src/store/backend.ts), run on every backend: the file store and a
// real, throwaway PostgreSQL. Each behaviour a command, the login path or the responder relies
// on is asserted through StoreBackend alone, opened by openStore as the CLI opens it; what only
// one backend can do is a capability, and the suite checks which backend offers which.
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {hashCodes, newSecret} from '../../src/core/codes.js'
import {newEnrolment} from '../../src/core/enrol.js'
import {TfaError} from '../../src/core/errors.js'
import {DEFAULT_SETTINGS, type Doc} from '../../src/core/model.js'
import {activate, getOrCreate} from '../../src/core/users.js'
import {openStore, type StoreBackend} from '../../src/store/backend.js'
import {type PgServer, startPostgres} from '../helpers/postgres.js'

let pg: PgServer
let work: string
let made = 0
const open: StoreBackend[] = []
beforeAll(async () => {
  pg = await startPostgres()
  work = mkdtempSync(join(tmpdir(), 'tfactl-contract-'))
})
afterAll(async () => {
  for (const s of open) await s.close().catch(() => undefined)
  pg?.destroy()
  if (work) rmSync(work, {recursive: true, force: true})
})

type Backend = 'file' | 'postgres'

/** A fresh, empty store of `backend`; `again()` opens the same store anew (another process would). */
async function fresh(backend: Backend) {
  const n = ++made
  const keyFile = join(work, `key-${n}`, 'tfactl.key')
  const spec = backend === 'file' ? join(work, `store-${n}`, 'store.json') : await pg.database(`contract${n}`)
  const again = async () => {
    const s = await openStore(spec, {keyFile})
    open.push(s)
    return s
  }
  /** What the backend keeps at rest, as text (the store file; the database's rows). */
  const atRest = () =>
    backend === 'file'
      ? readFileSync(spec, 'utf8')
      : pg.tool('psql', ['-d', `contract${n}`, '-At', '-c', 'SELECT name, data FROM tfactl_users ORDER BY name; SELECT settings FROM tfactl_settings'])
  /** Breaks alice's stored record (a field of the wrong type), behind the backend's back. */
  const damage = () => {
    if (backend === 'file') writeFileSync(spec, readFileSync(spec, 'utf8').replace('"digits":6', '"digits":9'))
    else pg.tool('psql', ['-d', `contract${n}`, '-c', `UPDATE tfactl_users SET data = jsonb_set(data, '{digits}', '9') WHERE name = 'alice'`])
  }
  /** Runs SQL in the database store (a database backend only). */
  const sql = (query: string) => pg.tool('psql', ['-d', `contract${n}`, '-At', '-v', 'ON_ERROR_STOP=1', '-c', query])
  return {store: await again(), again, atRest, damage, spec, sql}
}

const enrol = (doc: Doc, user: string, now = Date.now()) => {
  const e = newEnrolment(30, 6, now)
  activate(doc, user, e)
  return e.secret!
}

const storeError = async (p: Promise<unknown>): Promise<string> => {
  const error = await p.then(
    () => undefined,
    (e) => e,
  )
  expect(error).toBeInstanceOf(TfaError)
  expect((error as TfaError).exit).toBe(3)
  return (error as Error).message
}

describe.each(['file', 'postgres'] as const)('StoreBackend contract (%s)', (backend) => {
  it('reads a new store as empty, with the default settings, and says so through settings() and summary()', async () => {
    const {store} = await fresh(backend)
    const doc = await store.read()
    expect(doc.users.size).toBe(0)
    expect(doc.settings).toEqual(DEFAULT_SETTINGS)
    if (store.settings) expect(await store.settings()).toEqual(DEFAULT_SETTINGS)
    if (store.summary) expect(await store.summary()).toEqual({settings: DEFAULT_SETTINGS, total: 0, configured: 0})
  })

  it('keeps what an update wrote, for the next process, and returns what the update returned', async () => {
    const {store, again} = await fresh(backend)
    const secret = await store.update((doc) => {
      doc.settings.enabled = true
      doc.settings.window = 2
      const s = enrol(doc, 'alice')
      getOrCreate(doc, 'bob').failures = 3
      return s
    })
    const doc = await (await again()).read()
    expect(doc.settings).toMatchObject({enabled: true, window: 2})
    expect(doc.users.get('alice')?.secret).toBe(secret)
    expect(doc.users.get('bob')?.failures).toBe(3)
    if (store.summary) expect(await (await again()).summary!()).toMatchObject({total: 2, configured: 1})
  })

  it('yields what each update changed: the users whose records it touched, and the settings before and after', async () => {
    const {store} = await fresh(backend)
    expect(store.lastChange).toBeUndefined()
    await store.update((doc) => {
      doc.settings.enabled = true
      enrol(doc, 'alice')
      enrol(doc, 'bob')
      getOrCreate(doc, 'carol').failures = 2
    })
    expect([...store.lastChange!.users].sort()).toEqual(['alice', 'bob', 'carol'])
    expect(store.lastChange).toMatchObject({before: {enabled: false}, after: {enabled: true}})
    await store.updateUser('bob', (doc) => void enrol(doc, 'bob'))
    expect([...store.lastChange!.users]).toEqual(['bob'])
    expect(store.lastChange!.after).toEqual(store.lastChange!.before)
    await store.update((doc) => {
      doc.users.delete('carol')
      void doc.users.get('alice') // read, not changed
      doc.settings.window = 3
    })
    expect([...store.lastChange!.users]).toEqual(['carol'])
    expect(store.lastChange).toMatchObject({before: {window: DEFAULT_SETTINGS.window}, after: {window: 3}})
  })

  it('writes nothing when the update throws, and passes the error on', async () => {
    const {store, again} = await fresh(backend)
    await store.update((doc) => void enrol(doc, 'alice'))
    const before = await store.read()
    await expect(
      store.update((doc) => {
        doc.users.delete('alice')
        doc.settings.enabled = true
        enrol(doc, 'bob')
        throw new Error('changed my mind')
      }),
    ).rejects.toThrow('changed my mind')
    const after = await (await again()).read()
    expect([...after.users.keys()]).toEqual(['alice'])
    expect(after.users.get('alice')).toEqual(before.users.get('alice'))
    expect(after.settings.enabled).toBe(false)
  })

  it('serialises concurrent updates from separate openers: none is lost', async () => {
    const {store, again} = await fresh(backend)
    const others = await Promise.all([again(), again(), again()])
    await Promise.all(
      Array.from({length: 12}, (_, i) =>
        [store, ...others][i % 4].update((doc) => {
          getOrCreate(doc, `u${i}`).failures = 1
          getOrCreate(doc, 'counter').failures += 1
        }),
      ),
    )
    const doc = await store.read()
    expect(doc.users.get('counter')?.failures).toBe(12)
    expect(doc.users.size).toBe(13)
  })

  it("gives a login the settings and that user's record, stores its changes, and nothing when it throws", async () => {
    const {store, again} = await fresh(backend)
    await store.update((doc) => {
      doc.settings.maxFailures = 7
      enrol(doc, 'alice')
    })
    const seen = await store.login('alice', (doc) => {
      const u = doc.users.get('alice')!
      u.failures = 2
      u.lastUsedStep = 1234
      return {maxFailures: doc.settings.maxFailures, hasSecret: Boolean(u.secret)}
    })
    expect(seen).toEqual({maxFailures: 7, hasSecret: true})
    await expect(
      store.login('alice', (doc) => {
        doc.users.get('alice')!.failures = 99
        throw new Error('no')
      }),
    ).rejects.toThrow('no')
    const u = (await (await again()).read()).users.get('alice')!
    expect(u.failures).toBe(2)
    expect(u.lastUsedStep).toBe(1234)
  })

  it('lets a login create the record of a user it has never seen', async () => {
    const {store} = await fresh(backend)
    await store.login('carol', (doc) => {
      expect(doc.users.get('carol')).toBeUndefined()
      getOrCreate(doc, 'carol').failures = 1
    })
    expect((await store.read()).users.get('carol')?.failures).toBe(1)
  })

  it('seals secrets and pending secrets at rest; hashed codes stay hashes', async () => {
    const {store, atRest} = await fresh(backend)
    const pending = newSecret()
    const secret = await store.update((doc) => {
      const s = enrol(doc, 'alice')
      const u = doc.users.get('alice')!
      u.pending = {...newEnrolment(30, 6, Date.now()), secret: pending}
      u.recovery = hashCodes(['RECOVERY-ONE'])
      return s
    })
    const text = atRest()
    expect(text).toContain('alice')
    expect(text).not.toContain(secret)
    expect(text).not.toContain(pending)
    expect(text).not.toContain('RECOVERY-ONE')
    const u = (await store.read()).users.get('alice')!
    expect(u.secret).toBe(secret)
    expect(u.pending?.secret).toBe(pending)
  })

  it('refuses a damaged record with exit 3, naming the field, on read and on update', async () => {
    const {store, again, damage} = await fresh(backend)
    await store.update((doc) => void enrol(doc, 'alice'))
    damage()
    const s = await again()
    expect(await storeError(s.read())).toMatch(/digits/)
    expect(await storeError(s.update(() => undefined))).toMatch(/digits/)
  })

  it('rotates the key: every secret re-sealed, still readable, by this process and the next', async () => {
    const {store, again, atRest} = await fresh(backend)
    const secret = await store.update((doc) => {
      getOrCreate(doc, 'bob').failures = 1
      return enrol(doc, 'alice')
    })
    const before = atRest()
    const {users, key} = await store.rotateKey()
    expect(users).toEqual(['alice'])
    expect(key).toMatch(/\S/)
    expect(atRest()).not.toBe(before)
    expect((await store.read()).users.get('alice')?.secret).toBe(secret)
    expect((await (await again()).read()).users.get('alice')?.secret).toBe(secret)
  })

  it('records one audit event per user acted on, in order, and never a code', async () => {
    const {store} = await fresh(backend)
    expect(await store.recordEvent('user:unlock', 'alice', {outcome: 'ok', reason: null})).toBeUndefined()
    expect(await store.recordEvent('user:secret:renew', ['bob', 'carol'], {outcome: 'ok', reason: null})).toBeUndefined()
    expect(await store.recordEvent('twofactor:enable', null, {outcome: 'ok', reason: null})).toBeUndefined()
    if (store.recordEvents)
      expect(
        await store.recordEvents([
          {time: new Date().toISOString(), command: 'radius:serve', user: 'dave', outcome: 'denied', reason: 'code_invalid', client: '10.0.0.1'},
        ]),
      ).toBeUndefined()
    const events = await store.readAudit()
    expect(events.map((e) => [e.command, e.user])).toEqual([
      ['user:unlock', 'alice'],
      ['user:secret:renew', 'bob'],
      ['user:secret:renew', 'carol'],
      ['twofactor:enable', null],
      ...(store.recordEvents ? [['radius:serve', 'dave']] : []),
    ])
    for (const e of events) {
      expect(e.time).toMatch(/^\d{4}-\d\d-\d\dT/)
      expect(e.actor.uid).toBe(process.getuid?.())
    }
  })

  it("audits an update's change from its change set: one line per user it touched, one without a user for settings alone, none when nothing changed or for a login", async () => {
    const {store} = await fresh(backend)
    const by = {command: 'test:change', outcome: () => ({outcome: 'ok', reason: null})}
    store.auditChanges(by)
    const lines = async () => (await store.readAudit()).map((e) => [e.command, e.user, e.outcome])
    const secrets = await store.update((doc) => [enrol(doc, 'alice'), enrol(doc, 'bob')])
    expect((await lines()).sort()).toEqual([
      ['test:change', 'alice', 'ok'],
      ['test:change', 'bob', 'ok'],
    ])
    expect(store.changeAudited).toEqual({outcome: 'ok', reason: null, users: new Set(['alice', 'bob'])})
    await store.update((doc) => {
      doc.settings = {...doc.settings, enabled: true}
    })
    await store.updateUser('bob', (doc) => {
      doc.users.get('bob')!.failures += 1
    })
    await store.update(() => undefined) // nothing changed
    await store.updateUser('alice', () => undefined)
    await store.login('alice', (doc) => {
      doc.users.get('alice')!.failures += 1 // a login keeps its own audit path
    })
    await expect(
      store.update((doc) => {
        enrol(doc, 'carol')
        throw new Error('refused')
      }),
    ).rejects.toThrow('refused')
    expect((await lines()).slice(2)).toEqual([
      ['test:change', null, 'ok'],
      ['test:change', 'bob', 'ok'],
    ])
    const trail = JSON.stringify(await store.readAudit())
    for (const secret of secrets) expect(trail).not.toContain(secret)
  })

  it("writes an update's audit lines before another writer can take the lock", async () => {
    const {store, again} = await fresh(backend)
    const other = await again()
    store.auditChanges({command: 'test:first', outcome: () => ({outcome: 'ok', reason: null})})
    let hold!: () => void
    let held!: () => void
    const holding = new Promise<void>((resolve) => (held = resolve))
    const first = store.update(async (doc) => {
      enrol(doc, 'alice')
      held()
      await new Promise<void>((resolve) => (hold = resolve))
    })
    await holding
    // the second writer waits for the first's lock; once it has it, the first's line is there
    const second = other.update(async () => (await other.readAudit()).map((e) => [e.command, e.user]))
    await new Promise((resolve) => setTimeout(resolve, 100))
    hold()
    await first
    expect(await second).toEqual([['test:first', 'alice']])
  })

  it('validates the whole store in check(), and reports its state in doctor()', async () => {
    const {store} = await fresh(backend)
    await store.update((doc) => {
      enrol(doc, 'alice')
      enrol(doc, 'bob')
    })
    expect(await store.check()).toMatchObject({valid: true, exists: true, users: 2})
    const {findings, doc} = await store.doctor()
    expect(doc?.users.size).toBe(2)
    expect(findings.length).toBeGreaterThan(0)
    // the throwaway server is reached over TCP without TLS: the connection check rightly says so; nothing else is wrong
    expect(findings.filter((f) => f.status === 'finding' && f.check !== 'database connection')).toEqual([])
  })

  it('gives a responder logins that may run side by side, and an audit sink whose events are read back after drain', async () => {
    const {store} = await fresh(backend)
    await store.update((doc) => {
      for (let i = 0; i < 8; i++) enrol(doc, `u${i}`)
    })
    const warnings: string[] = []
    const {login, audit} = store.responder((w) => warnings.push(w))
    await Promise.all(
      Array.from({length: 16}, (_, i) =>
        login(`u${i % 8}`, (doc) => {
          doc.users.get(`u${i % 8}`)!.failures += 1
        }),
      ),
    )
    for (let i = 0; i < 8; i++) audit.record({command: 'radius:serve', user: `u${i}`, outcome: 'allowed', reason: 'code_accepted', client: '127.0.0.1'})
    await audit.drain()
    const doc = await store.read()
    for (let i = 0; i < 8; i++) expect(doc.users.get(`u${i}`)?.failures).toBe(2)
    const events = (await store.readAudit()).filter((e) => e.command === 'radius:serve')
    expect(events.map((e) => e.user)).toEqual(Array.from({length: 8}, (_, i) => `u${i}`))
    expect(events.every((e) => e.client === '127.0.0.1')).toBe(true)
    expect(warnings).toEqual([])
  })

  it.runIf(backend === 'postgres')('leaves no audit row for a change whose commit failed, and the change is not there either', async () => {
    const {store, sql} = await fresh(backend)
    await store.update((doc) => void enrol(doc, 'alice'))
    // a check PostgreSQL runs at COMMIT: the transaction's writes (the row, its audit line) all roll back
    sql(`CREATE FUNCTION refuse_mallory() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.name = 'mallory' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NEW; END $$;
      CREATE CONSTRAINT TRIGGER refuse_mallory AFTER INSERT ON tfactl_users DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_mallory()`)
    store.auditChanges({command: 'test:change', outcome: () => ({outcome: 'ok', reason: null})})
    await expect(store.update((doc) => void enrol(doc, 'mallory'))).rejects.toThrow(/refused at commit/)
    expect(store.changeAudited).toBeUndefined()
    expect((await store.read()).users.has('mallory')).toBe(false)
    expect((await store.readAudit()).map((e) => e.user)).not.toContain('mallory')
    expect(sql(`SELECT count(*) FROM tfactl_audit WHERE "user" = 'mallory'`).trim()).toBe('0')
  })

  it('offers the capabilities of its kind: repairs and the pam_oath users file for a file store, neither for a database', async () => {
    const {store} = await fresh(backend)
    expect(Boolean(store.usersFile)).toBe(store.localOathFile)
    if (backend === 'file') {
      expect(store.repair).toBeDefined()
      expect(store.usersFile).toBeDefined()
    } else {
      expect(store.repair).toBeUndefined()
      expect(store.usersFile).toBeUndefined()
    }
    expect(store.description).not.toMatch(/:[^@/]*@/) // never a password
  })
})
