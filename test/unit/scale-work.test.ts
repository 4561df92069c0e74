// A one-user change does the work of one user. Nothing here is timed: the
// test counts the secrets the store opens and seals (secretWork) and compares files byte for
// byte, at two sizes, so that work growing with the number of users fails it.
import {createHash} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {newEnrolment} from '../../src/core/enrol.js'
import {formatOathTime} from '../../src/core/oath.js'
import {hashCodesAsync} from '../../src/core/codes.js'
import {activate} from '../../src/core/users.js'
import {hotp, timeStep} from '../../src/core/totp.js'
import {checkLogin} from '../../src/login/check.js'
import {FileBackend} from '../../src/store/file/backend.js'
import {Store} from '../../src/store/file/store.js'
import {digestWork, usersFileDigest} from '../../src/store/oathfile/sync.js'
import {secretWork} from '../../src/store/secrets.js'

const dirs: string[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

const name = (i: number) => `u${String(i).padStart(6, '0')}`

/** A store of `n` users with secrets, 2FA on, and (optionally) SSH 2FA with a users file. */
async function storeOf(n: number, ssh: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'tfactl-work-'))
  dirs.push(dir)
  const store = new Store(join(dir, 'store.json'))
  const oath = join(dir, 'users.oath')
  const secrets = new Map<string, string>()
  await store.update((doc) => {
    Object.assign(doc.settings, {enabled: true, failDelay: 0, ssh, oathFile: ssh ? oath : null})
    for (let i = 0; i < n; i++) {
      const e = newEnrolment(30, 6, Date.now())
      activate(doc, name(i), e)
      secrets.set(name(i), e.secret)
    }
  })
  return {store, oath, secrets}
}

/** What `fn` opened and sealed. */
async function work(fn: () => Promise<unknown>) {
  const before = {...secretWork}
  await fn()
  return {decrypted: secretWork.decrypted - before.decrypted, encrypted: secretWork.encrypted - before.encrypted}
}

const linesOf = (path: string) => readFileSync(path, 'utf8').split('\n')
/** The users-file digest the store recorded (its header line). */
const recordedDigest = (store: Store) => /"oath":"([^"]+)"/.exec(readFileSync(store.path, 'utf8').split('\n')[0])?.[1]
const storeLines = (store: Store) => readFileSync(store.path, 'utf8').split('\n').slice(1) // after the header

describe.each([2_000, 20_000])('a one-user change in a store of %i users', (n) => {
  it("renewing one user opens and seals that user's secret only, and copies every other line as it is", async () => {
    const {store} = await storeOf(n, false)
    const target = name(n / 2)
    const before = storeLines(store)
    const w = await work(() => store.update((doc) => activate(doc, target, newEnrolment(30, 6, Date.now()))))
    expect(w).toEqual({decrypted: 1, encrypted: 1})
    const after = storeLines(store)
    expect(after).toHaveLength(before.length)
    const changed = after.flatMap((line, i) => (line === before[i] ? [] : [i]))
    expect(changed).toEqual([n / 2]) // the line of the renewed user, nothing else
    expect(after[n / 2]).toMatch(new RegExp(`^"${target}":`))
    // a full read still validates (and opens) everything
    const all = await work(async () => expect((await store.read()).users.size).toBe(n))
    expect(all.decrypted).toBe(n)
  }, 60_000)

  it("with SSH 2FA on, renewing one user rewrites that user's users-file line only, opening no other secret", async () => {
    const {store, oath} = await storeOf(n, true)
    const target = name(7)
    const before = linesOf(oath)
    expect(before).toHaveLength(n + 2) // header, n users, final newline
    const w = await work(() => store.update((doc) => activate(doc, target, newEnrolment(30, 6, Date.now()))))
    expect(w).toEqual({decrypted: 1, encrypted: 1})
    const after = linesOf(oath)
    expect(after.flatMap((line, i) => (line === before[i] ? [] : [after[i].split('\t')[1]]))).toEqual([target])
    expect(store.oathSync?.users).toHaveLength(n)
  }, 60_000)

  it("with SSH 2FA on, a one-user change works out the users file's new digest from that user's lines, not from the file", async () => {
    const {store, oath} = await storeOf(n, true)
    const size = readFileSync(oath).length
    const renew = (i: number) => store.update((doc) => activate(doc, name(i), newEnrolment(30, 6, Date.now())))
    await renew(1) // the first update after enrolment: the file's stamp is recorded
    const bytes = digestWork.bytes
    await renew(2)
    await store.update((doc) => {
      doc.users.delete(name(3)) // a line goes
      activate(doc, 'zz-new', newEnrolment(30, 6, Date.now())) // and one comes
    })
    expect(digestWork.bytes - bytes).toBeLessThan(2_000) // a few lines, at any size
    expect(recordedDigest(store)).toBe(usersFileDigest(readFileSync(oath, 'utf8')))
    // a file written since (pam_oath records a login: a new inode) is gone over once, then patched
    writeFileSync(`${oath}.copy`, readFileSync(oath))
    const {renameSync} = await import('node:fs')
    renameSync(`${oath}.copy`, oath)
    const again = digestWork.bytes
    expect(await work(() => renew(4))).toEqual({decrypted: 1, encrypted: 1})
    expect(digestWork.bytes - again).toBeGreaterThanOrEqual(size)
    expect(recordedDigest(store)).toBe(usersFileDigest(readFileSync(oath, 'utf8')))
  }, 60_000)

  it('with SSH 2FA on, a login opens one secret, appends to the journal and changes one users-file line', async () => {
    const {store, oath, secrets} = await storeOf(n, true)
    const target = name(n - 1)
    const before = linesOf(oath)
    const storeBefore = readFileSync(store.path)
    const code = hotp(base32Decode(secrets.get(target)!)!, timeStep(Date.now(), 30), 6)
    let allowed: boolean | undefined
    const w = await work(async () => {
      allowed = (await checkLogin(new FileBackend(store.path), {user: target, service: 'ssh', method: 'password', code})).result.allowed
    })
    expect(allowed).toBe(true)
    expect(w).toEqual({decrypted: 1, encrypted: 0})
    expect(readFileSync(store.path).equals(storeBefore)).toBe(true) // the outcome went to the journal
    const after = linesOf(oath)
    const changed = after.flatMap((line, i) => (line === before[i] ? [] : [i]))
    expect(changed.map((i) => after[i].split('\t')[1])).toEqual([target])
    expect(after[changed[0]].split('\t')[5]).toBe(code) // pam_oath now refuses the code too
    // a user without a secret needs no secret opened at all
    const none = await work(() => checkLogin(new FileBackend(store.path), {user: 'nobody', service: 'ssh', method: 'password'}))
    expect(none).toEqual({decrypted: 0, encrypted: 0})
  }, 60_000)

  it('refuses a one-user change that touches another user, and writes nothing', async () => {
    const {store} = await storeOf(n, false)
    const bytes = readFileSync(store.path)
    await expect(
      new FileBackend(store.path).updateUser(name(1), (doc) => {
        doc.users.get(name(1))!.failures = 3
        doc.users.set(name(2), {...doc.users.get(name(1))!}) // the change sees that one user only, as on every backend
      }),
    ).rejects.toThrow(/also changed u000002/)
    expect(readFileSync(store.path).equals(bytes)).toBe(true)
  }, 60_000)

  it('a one-user change of nothing, or of the hot state only (unlock, recovery and bypass codes), journals it like a login: the store file stays as it is', async () => {
    const {store, secrets} = await storeOf(n, false)
    const backend = new FileBackend(store.path)
    const target = name(11)
    const bytes = readFileSync(store.path)
    const journal = () => statSync(`${store.path}.journal`).size
    const size = journal()
    const w = await work(() => backend.updateUser(target, (doc) => doc.users.get(target)!.failures)) // nothing changed
    expect(w).toEqual({decrypted: 1, encrypted: 0})
    expect(journal()).toBe(size)
    expect([...backend.lastChange!.users]).toEqual([])
    const codes = ['AAAAA-BBBBB', 'CCCCC-DDDDD']
    const recovery = await hashCodesAsync(codes)
    await backend.updateUser(target, (doc) => {
      const record = doc.users.get(target)!
      Object.assign(record, {recovery, failures: 4, lockedUntil: new Date(Date.now() + 60_000).toISOString()})
    })
    expect(readFileSync(store.path).equals(bytes)).toBe(true) // neither rewritten nor grown: the journal holds it
    expect(journal()).toBeGreaterThan(size)
    expect([...backend.lastChange!.users]).toEqual([target]) // its change set, as every update yields
    expect(backend.lastChange!.after).toEqual(backend.lastChange!.before)
    const seen = (await store.read()).users.get(target)!
    expect(seen).toMatchObject({recovery, failures: 4})
    // a locked user is unlocked the same way, and each recovery code then logs in once
    await backend.updateUser(target, (doc) => Object.assign(doc.users.get(target)!, {failures: 0, lockedUntil: null}))
    expect(readFileSync(store.path).equals(bytes)).toBe(true)
    const login = (code: string) => checkLogin(backend, {user: target, service: 'ui', method: 'password', code})
    expect((await login('aaaaabbbbb')).result.reason).toBe('recovery_code_accepted')
    expect((await login('AAAAA-BBBBB')).result.reason).toBe('code_invalid')
    // a change of anything else (a new secret) takes the update path: that user's line rewritten
    const secret = secrets.get(target)
    await backend.updateUser(target, (doc) => activate(doc, target, newEnrolment(30, 6, Date.now())))
    const after = (await store.read()).users.get(target)!
    expect(after.secret).not.toBe(secret)
    expect(after).toMatchObject({recovery: null, failures: 0, lastUsedStep: null}) // renewal clears what the journal held
    expect(readFileSync(store.path).equals(bytes)).toBe(false)
    expect(journal()).toBeLessThanOrEqual(size) // a new journal starts with the rewritten store
  }, 60_000)

  it('lists every user a bounded batch at a time, as a full read has them (journal applied)', async () => {
    const {store, secrets} = await storeOf(n, false)
    const target = name(5)
    const code = hotp(base32Decode(secrets.get(target)!)!, timeStep(Date.now(), 30), 6)
    expect((await checkLogin(new FileBackend(store.path), {user: target, service: 'ui', method: 'password', code})).result.allowed).toBe(true) // in the journal only
    const batches: Array<Array<[string, unknown]>> = []
    await store.eachUser((batch) => batches.push(batch))
    expect(Math.max(...batches.map((b) => b.length))).toBeLessThanOrEqual(2000)
    const listed = batches.flat()
    expect(listed.map(([u]) => u)).toEqual([...(await store.read()).users.keys()])
    expect(new Map(listed).get(target)).toEqual((await store.read()).users.get(target))
    expect((new Map(listed).get(target) as {lastUsedAt: string | null}).lastUsedAt).not.toBeNull()
  }, 60_000)

  it("twofactor:status's summary opens no secret", async () => {
    const {store} = await storeOf(n, false)
    const w = await work(async () => expect(await store.summary()).toMatchObject({total: n, configured: n}))
    expect(w).toEqual({decrypted: 0, encrypted: 0})
  }, 60_000)
})

describe('a users file that is not the one the store wrote', () => {
  it('is made anew from every record by the next update (a crash between the two writes, a hand edit)', async () => {
    const {store, oath} = await storeOf(300, true)
    const full = readFileSync(oath, 'utf8')
    // as if tfactl died after writing the store but before the users file: a line is missing
    writeFileSync(
      oath,
      full
        .split('\n')
        .filter((line) => !line.includes('\tu000042\t'))
        .join('\n'),
    )
    const w = await work(() => store.update((doc) => activate(doc, name(7), newEnrolment(30, 6, Date.now()))))
    expect(w.decrypted).toBeGreaterThanOrEqual(300) // the whole file was rendered from the store
    const lines = linesOf(oath)
    expect(lines.filter((line) => line.includes('\tu000042\t'))).toHaveLength(1)
    expect(lines).toHaveLength(302)
    // and the next one-user change is back to one user's work
    expect(await work(() => store.update((doc) => activate(doc, name(8), newEnrolment(30, 6, Date.now()))))).toEqual({decrypted: 1, encrypted: 1})
  })

  it("a one-user change is not refused for the replay state pam_oath recorded for other users (a file out of step: every user's is taken in)", async () => {
    const {store, oath, secrets} = await storeOf(50, true)
    const now = Date.now()
    const code = hotp(base32Decode(secrets.get(name(5))!)!, timeStep(now, 30), 6)
    // pam_oath accepted u000005's code over SSH; and a line of another user went missing
    const lines = readFileSync(oath, 'utf8')
      .split('\n')
      .filter((line) => !line.includes('\tu000042\t'))
      .map((line) => (line.includes('\tu000005\t') ? `${line.split('\t').slice(0, 4).join('\t')}\t0\t${code}\t${formatOathTime(now)}` : line))
    writeFileSync(oath, lines.join('\n'))
    await new FileBackend(store.path).updateUser(name(7), (doc) => activate(doc, name(7), newEnrolment(30, 6, Date.now())))
    const doc = await store.read()
    expect(doc.users.get(name(5))!.lastUsedStep).toBe(timeStep(now, 30)) // taken in, so login:check refuses the code too
    expect(readFileSync(oath, 'utf8')).toContain('\tu000042\t')
  })

  it('keeps a store whose lines were edited by hand from being carried over unchecked', async () => {
    const {store} = await storeOf(50, false)
    const text = readFileSync(store.path, 'utf8')
    writeFileSync(store.path, text.replace(/("u000010":\{[^\n]*?)"digits":6/, '$1"digits":9'), {mode: 0o600})
    await expect(store.update((doc) => activate(doc, name(3), newEnrolment(30, 6, Date.now())))).rejects.toThrow(/u000010\.digits/)
  })
})

describe("the store lines' digest", () => {
  /** The store's header with its CRC-32 replaced by the SHA-256 of the same lines (a store written before, or by a Node without zlib.crc32). */
  const asSha256 = (path: string, digest = (body: string) => createHash('sha256').update(body).digest('hex')) => {
    const text = readFileSync(path, 'utf8')
    const nl = text.indexOf('\n')
    expect(text.slice(0, nl)).toMatch(/"linesCrc32":"[0-9a-f]{8}"/)
    writeFileSync(path, text.slice(0, nl).replace(/"linesCrc32":"[0-9a-f]{8}"/, `"linesSha256":"${digest(text.slice(nl))}"`) + text.slice(nl), {mode: 0o600})
  }

  it('trusts the lines of a store that records their SHA-256 instead: an update still opens one secret', async () => {
    const {store} = await storeOf(200, false)
    asSha256(store.path)
    const w = await work(() => store.update((doc) => activate(doc, name(3), newEnrolment(30, 6, Date.now()))))
    expect(w).toEqual({decrypted: 1, encrypted: 1})
    expect(readFileSync(store.path, 'utf8').split('\n')[0]).toMatch(/"linesCrc32":"[0-9a-f]{8}"/) // written with the CRC-32 from then on
  })

  it('decodes and checks every record when the recorded digest does not match the lines', async () => {
    const {store} = await storeOf(200, false)
    asSha256(store.path, () => '0'.repeat(64))
    const w = await work(() => store.update((doc) => activate(doc, name(3), newEnrolment(30, 6, Date.now()))))
    expect(w.decrypted).toBe(200)
  })
})
