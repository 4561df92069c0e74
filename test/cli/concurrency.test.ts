// Processes that write one store at the same time lose nothing (the store is locked and
// replaced atomically), and the store stays private.
import {statSync} from 'node:fs'
import {dirname} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {oathtool, tempStore} from '../helpers/cli.js'
import {check, enable, expectDecision, type TempStore} from './support.js'

const USERS = Array.from({length: 8}, (_, i) => `user${i + 1}`)

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

/** Renews every user in its own process, all started at once; returns user → secret. */
async function renewAllAtOnce(): Promise<Map<string, string>> {
  const runs = await Promise.all(USERS.map((user) => store.run(['user:secret:renew', user, '--qr', 'none', '--json'])))
  const secrets = new Map<string, string>()
  for (const [i, r] of runs.entries()) {
    expect(r.code, `${USERS[i]}: ${r.stderr}`).toBe(0)
    secrets.set(USERS[i], r.json.users[0].secret)
  }
  return secrets
}

async function expectAllEnrolled(secrets: Map<string, string>): Promise<void> {
  const list = await store.run(['user:list', '--json'])
  expect(list.code, list.stderr).toBe(0)
  const configured = list.json.users.filter((u: any) => u.configured).map((u: any) => u.user)
  expect(configured.sort()).toEqual([...USERS].sort())

  // Every stored secret is the one its renewal printed: each user's code verifies.
  for (const user of USERS) expectDecision(await check(store, user, {code: await oathtool(secrets.get(user)!)}), true, 'code_accepted')
}

function expectPrivate(): void {
  expect(statSync(store.path).mode & 0o777).toBe(0o600)
  expect(statSync(dirname(store.path)).mode & 0o777).toBe(0o700)
}

describe('concurrent writers', () => {
  it('keeps all eight secrets when eight processes renew eight users at once', async () => {
    await enable(store)
    const secrets = await renewAllAtOnce()
    expect(new Set(secrets.values()).size).toBe(8)
    await expectAllEnrolled(secrets)
    expectPrivate()
  }, 180_000)

  it('keeps all eight secrets when the store does not exist before the eight processes start', async () => {
    const secrets = await renewAllAtOnce()
    await enable(store)
    await expectAllEnrolled(secrets)
    expectPrivate()
  }, 180_000)

  it('records every one of eight concurrent accepted logins', async () => {
    await enable(store)
    const secrets = await renewAllAtOnce()
    const codes = await Promise.all(USERS.map((user) => oathtool(secrets.get(user)!)))
    const runs = await Promise.all(USERS.map((user, i) => check(store, user, {code: codes[i]})))
    for (const r of runs) expectDecision(r, true, 'code_accepted')
    // Had an update been lost, a code would pass a second time.
    const again = await Promise.all(USERS.map((user, i) => check(store, user, {code: codes[i]})))
    for (const r of again) expectDecision(r, false, 'code_replayed')
  }, 180_000)
})
