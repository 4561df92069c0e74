// The file store's logins through the real `tfactl radius:serve`, many at once: they are decided
// and written in groups (src/store/file/group-commit.ts). Whatever the grouping, each code is
// accepted once, an Accept is on disk before it leaves (kill -9, restart), and what other
// processes write between groups (login:check, user:secret:renew, another responder) counts.
import {appendFileSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {hotp, timeStep} from '../../src/core/totp.js'
import {tempStore} from '../helpers/cli.js'
import {radiusClient, type Responder, startResponder, writeClients} from '../helpers/radius.js'

const SECRET = 'group-commit-secret'
const WINDOW = 5
const USERS = Array.from({length: 300}, (_, i) => `g${String(i).padStart(3, '0')}`)

/** The journal's live content: the newest entry line per user, and their bytes. */
function journalOf(path: string): {size: number; entries: number; live: number} {
  const text = readFileSync(`${path}.journal`, 'utf8')
  const newest = new Map<string, number>()
  const lines = text.split('\n').slice(1)
  for (const line of lines) if (line) newest.set(JSON.parse(line).u, line.length + 1)
  return {size: Buffer.byteLength(text), entries: lines.filter(Boolean).length, live: [...newest.values()].reduce((a, b) => a + b, 0)}
}

/** Codes of steps after each user's last one (the replay rule), waiting for the clock when a user has used up the window. */
function codeBook(keys: Map<string, Buffer>) {
  const lastStep = new Map<string, number>()
  return {
    async fresh(user: string, key = keys.get(user)!): Promise<string> {
      for (;;) {
        const now = timeStep(Date.now(), 30)
        const step = Math.max((lastStep.get(user) ?? -1) + 1, now - WINDOW + 1)
        if (step <= now + WINDOW - 1) {
          lastStep.set(user, step)
          return hotp(key, step, 6)
        }
        await sleep(1000)
      }
    },
    forget(user: string) {
      lastStep.delete(user)
    },
  }
}

describe('radius:serve with a file store: logins committed in groups', {timeout: 240_000}, () => {
  const store = tempStore()
  const keys = new Map<string, Buffer>()
  const codes = codeBook(keys)
  const client = radiusClient(SECRET)
  let clients: string
  let responder: Responder
  const started: Responder[] = []
  let accepted = 0
  const start = async () => {
    const r = await startResponder(['--clients', clients, '--store', store.path])
    started.push(r)
    return r
  }
  /**
   * Sends every (user, code), 64 in flight (as pam_radius_auth hosts would: more at once only
   * overflows the socket's receive buffer); the answers in the same order.
   */
  const burst = async (port: number, logins: Array<[string, string]>) => {
    const answers: Array<Awaited<ReturnType<typeof client.ask>>> = []
    let next = 0
    const worker = async () => {
      while (next < logins.length) {
        const i = next++
        answers[i] = await client.ask(port, logins[i][0], logins[i][1], 10_000)
        if (answers[i] === 'accept') accepted++
      }
    }
    await Promise.all(Array.from({length: 64}, worker))
    return answers
  }
  const cli = async (user: string, code: string) =>
    (await store.run(['login:check', user, '--service', 'ui', '--method', 'password', '--code', code, '--json'])).json

  beforeAll(async () => {
    expect((await store.run(['twofactor:enable', '--fail-delay', '0', '--window', String(WINDOW), '--max-failures', '0'])).code).toBe(0)
    const list = join(store.dir, 'users.txt')
    writeFileSync(list, USERS.join('\n'))
    const enrolled = await store.run(['user:secret:renew', '--users-file', list, '--qr', 'none', '--json'])
    expect(enrolled.code, enrolled.stderr).toBe(0)
    for (const u of enrolled.json.users) keys.set(u.user, base32Decode(u.secret)!)
    clients = writeClients(join(store.dir, 'clients'), [`127.0.0.1 ${SECRET} code`])
    responder = await start()
  })
  afterAll(async () => {
    client.close()
    for (const r of started) await r.stop()
    store.cleanup()
  })

  it('copies of one code sent at once: exactly one Accept per code', async () => {
    const users = USERS.slice(0, 60)
    const logins: Array<[string, string]> = []
    for (const user of users) {
      const code = await codes.fresh(user)
      for (let i = 0; i < 4; i++) logins.push([user, code])
    }
    const answers = await burst(responder.port, logins)
    for (const [i, user] of users.entries()) {
      const mine = answers.slice(i * 4, i * 4 + 4)
      expect(
        mine.filter((a) => a === 'accept'),
        `${user}: ${mine}`,
      ).toHaveLength(1)
      expect(mine.filter((a) => a === 'reject')).toHaveLength(3)
    }
  })

  it("a burst of many users' logins: all accepted, and every one of those codes refused when sent again", async () => {
    const logins: Array<[string, string]> = []
    for (const user of USERS) logins.push([user, await codes.fresh(user)])
    expect(await burst(responder.port, logins)).toEqual(logins.map(() => 'accept'))
    expect(await burst(responder.port, logins)).toEqual(logins.map(() => 'reject'))
  })

  it('kill -9 right after a burst of Accepts: after a restart those codes are refused, by the responder and by login:check', async () => {
    const logins: Array<[string, string]> = []
    for (const user of USERS) logins.push([user, await codes.fresh(user)])
    expect(await burst(responder.port, logins)).toEqual(logins.map(() => 'accept'))
    responder.child.kill('SIGKILL') // at once: no time to write anything more
    await new Promise((resolve) => responder.child.once('exit', resolve))
    responder = await start()
    expect(await burst(responder.port, logins)).toEqual(logins.map(() => 'reject'))
    const [user, code] = logins[7]
    expect(await cli(user, code)).toMatchObject({allowed: false, reason: 'code_replayed'})
  })

  it('a code login:check accepted between groups is refused by the responder, and the reverse', async () => {
    const warm = await burst(responder.port, [[USERS[1], await codes.fresh(USERS[1])]]) // the responder knows this user already
    expect(warm).toEqual(['accept'])
    const byCli = await codes.fresh(USERS[1])
    expect(await cli(USERS[1], byCli)).toMatchObject({allowed: true, reason: 'code_accepted'})
    expect(await burst(responder.port, [[USERS[1], byCli]])).toEqual(['reject'])

    const byResponder = await codes.fresh(USERS[2])
    expect(await burst(responder.port, [[USERS[2], byResponder]])).toEqual(['accept'])
    expect(await cli(USERS[2], byResponder)).toMatchObject({allowed: false, reason: 'code_replayed'})
  })

  it('user:secret:renew between groups: the responder checks codes of the new secret, not the old one', async () => {
    const user = USERS[3]
    expect(await burst(responder.port, [[user, await codes.fresh(user)]])).toEqual(['accept'])
    const oldKey = keys.get(user)!
    const renewed = await store.run(['user:secret:renew', user, '--qr', 'none', '--json'])
    expect(renewed.code, renewed.stderr).toBe(0)
    const newKey = base32Decode(renewed.json.users[0].secret)!
    keys.set(user, newKey)
    codes.forget(user) // a new secret starts with no replay state
    const now = timeStep(Date.now(), 30)
    expect(await burst(responder.port, [[user, hotp(oldKey, now + 1, 6)]])).toEqual(['reject'])
    expect(await burst(responder.port, [[user, await codes.fresh(user, newKey)]])).toEqual(['accept'])
  })

  it('the journal is compacted under load, bounded by its live content, and keeps every replay state', async () => {
    const logins: Array<[string, string]> = []
    for (const user of USERS) logins.push([user, await codes.fresh(user)])
    expect(await burst(responder.port, logins)).toEqual(logins.map(() => 'accept'))
    const after = journalOf(store.path)
    // about 960 logins so far, far fewer lines: compacted, and never past twice the live content (or 64 KiB)
    expect(accepted).toBeGreaterThan(900)
    expect(after.entries).toBeLessThan(accepted / 2)
    expect(after.size).toBeLessThanOrEqual(Math.max(64 << 10, 2 * after.live))
    expect(await burst(responder.port, logins)).toEqual(logins.map(() => 'reject'))
    await responder.stop()
    responder = await start()
    expect(await burst(responder.port, logins)).toEqual(logins.map(() => 'reject'))
  })

  it('another responder on the same store: a code is accepted once across both, whatever each has in memory', async () => {
    const other = await start()
    const logins: Array<[string, string]> = []
    for (const user of USERS.slice(0, 100)) logins.push([user, await codes.fresh(user)])
    const answers = await Promise.all([burst(responder.port, logins), burst(other.port, logins)])
    for (let i = 0; i < logins.length; i++) expect([answers[0][i], answers[1][i]].sort(), logins[i][0]).toEqual(['accept', 'reject'])
  })
})

describe('login:check keeps the journal bounded by its live content', () => {
  const store = tempStore()
  afterAll(() => store.cleanup())

  it('a journal grown with stale entries is compacted by the next login, which keeps the newest state', async () => {
    await store.run(['twofactor:enable', '--fail-delay', '0', '--window', '1'])
    const key = base32Decode((await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])).json.users[0].secret)!
    await store.run(['user:secret:renew', 'bob', '--qr', 'none'])
    const now = timeStep(Date.now(), 30)
    const first = hotp(key, now - 1, 6)
    expect((await store.run(['login:check', 'alice', '--code', first, '--json'])).json).toMatchObject({allowed: true})
    const journal = `${store.path}.journal`
    const lines = readFileSync(journal, 'utf8').split('\n')
    const newest = lines[lines.length - 1]
    const stale = JSON.stringify({u: 'bob', s: {lastUsedStep: 1, lastUsedAt: null, failures: 0, lockedUntil: null, recovery: null, bypass: null}})
    appendFileSync(journal, `\n${stale}`.repeat(2000) + `\n${newest}`) // 2 000 stale lines, then alice's newest again
    expect(journalOf(store.path).size).toBeGreaterThan(200_000)
    expect((await store.run(['login:check', 'alice', '--code', first, '--json'])).json).toMatchObject({allowed: false, reason: 'code_replayed'})
    expect((await store.run(['login:check', 'alice', '--code', hotp(key, now, 6), '--json'])).json).toMatchObject({allowed: true})
    const after = journalOf(store.path)
    expect(after.size).toBeLessThan(2000)
    expect(after.entries).toBe(2) // alice's and bob's newest
    expect((await store.run(['login:check', 'alice', '--code', hotp(key, now, 6), '--json'])).json).toMatchObject({allowed: false, reason: 'code_replayed'})
  })
})
