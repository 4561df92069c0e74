// Enrolling a Unix group as NSS sees it: a real group and real users (throwaway, made with
// groupadd/useradd and removed afterwards), one of them in the group through its primary gid only.
import {execFileSync, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {tempStore} from '../helpers/cli.js'
import {expectJsonError, renew, type TempStore} from './support.js'

const canManageUsers = process.getuid?.() === 0 && spawnSync('groupadd', ['--help']).status === 0
const tag = randomBytes(3).toString('hex')
const group = `tfactl-g${tag}`
const member = `tfactl-m${tag}` // listed in the group
const primary = `tfactl-p${tag}` // the group is its primary group, it is not listed
const outsider = `tfactl-x${tag}` // in neither way
const made: string[] = []
let store: TempStore

beforeAll(() => {
  store = tempStore()
  if (!canManageUsers) return
  execFileSync('groupadd', [group])
  made.push(`group:${group}`)
  execFileSync('useradd', ['-M', '-N', '-s', '/usr/sbin/nologin', member])
  made.push(member)
  execFileSync('useradd', ['-M', '-N', '-g', group, '-s', '/usr/sbin/nologin', primary])
  made.push(primary)
  execFileSync('useradd', ['-M', '-N', '-s', '/usr/sbin/nologin', outsider])
  made.push(outsider)
  execFileSync('gpasswd', ['-a', member, group], {stdio: 'ignore'})
})
afterAll(() => {
  for (const name of made.reverse()) {
    if (name.startsWith('group:')) spawnSync('groupdel', [name.slice(6)])
    else spawnSync('userdel', [name])
  }
  store?.cleanup()
})

describe.skipIf(!canManageUsers)('enrolling a Unix group', () => {
  it('enrols the listed members and the users whose primary group it is; an --if-missing re-run changes nothing', async () => {
    const first = await store.run(['user:secret:renew', '--group', group, '--if-missing', '--qr', 'none', '--json'])
    expect(first.code, first.stderr).toBe(0)
    expect(first.json.users.map((u: any) => u.user)).toEqual([member, primary])
    for (const u of first.json.users) expect(u).toMatchObject({changed: true, pending: false, interval: 30, digits: 6})
    const again = await store.run(['user:secret:renew', '--group', group, '--if-missing', '--qr', 'none', '--json'])
    expect(again.json.users).toEqual([
      {user: member, changed: false},
      {user: primary, changed: false},
    ])
  })

  it('lists the group with inGroup, and enrolled users outside it as inGroup false', async () => {
    await renew(store, outsider)
    const r = await store.run(['user:list', '--group', group, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json.users.map((u: any) => [u.user, u.inGroup, u.configured])).toEqual([
      [member, true, true],
      [primary, true, true],
      [outsider, false, true],
    ])
  })

  it('sees a member leave the group', async () => {
    execFileSync('gpasswd', ['-d', member, group], {stdio: 'ignore'})
    const r = await store.run(['user:list', '--group', group, '--json'])
    expect(r.json.users.find((u: any) => u.user === member)).toMatchObject({inGroup: false, configured: true})
  })

  it('refuses a group that does not exist or a bad group name (exit 2), enrolling nobody', async () => {
    const before = store.bytes()
    expect(expectJsonError(await store.run(['user:secret:renew', '--group', `tfactl-none${tag}`, '--qr', 'none', '--json']), 2)).toMatch(/no group/)
    for (const bad of ['a:b', '-x', '1000'])
      expect(expectJsonError(await store.run(['user:secret:renew', '--group', bad, '--qr', 'none', '--json']), 2)).toMatch(/invalid group name/)
    expect(expectJsonError(await store.run(['user:list', '--group', `tfactl-none${tag}`, '--json']), 2)).toMatch(/no group/)
    expect(store.bytes()).toEqual(before)
  })
})
