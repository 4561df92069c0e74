// Hardware tokens drift: logins follow a token's offset (within ±10 steps) and centre its window
// on it; user:secret:resync (root only, audited) finds a larger one from two consecutive codes.
// The offset lives in the user's record: both backends keep it (the file store, PostgreSQL).
import {spawnSync} from 'node:child_process'
import {describe, expect, it} from 'vitest'
import {BIN, oathtool} from '../helpers/cli.js'
import {backendStores, check, enable, expectDecision, expectJsonError, type TempStore, withinOneStep} from './support.js'

const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'
const make = backendStores('drift')

/** Imports the known secret for alice and turns 2FA on. */
async function enrolled(backend: 'file' | 'postgres'): Promise<TempStore> {
  const s = await make(backend)
  await enable(s, '--window', '1')
  const r = await s.run(['user:secret:import', 'alice', '--secret-stdin', '--json'], {input: SECRET})
  expect(r.code, r.stderr).toBe(0)
  return s
}

/** The code the token shows `seconds` from now. */
const tokenCode = (seconds: number) => oathtool(SECRET, {now: `now ${seconds >= 0 ? '+' : '-'} ${Math.abs(seconds)} seconds`})
const driftOf = async (s: TempStore) => (await s.run(['user:list', '--json'])).json.users.find((u: any) => u.user === 'alice').driftSteps

describe.each(['file', 'postgres'] as const)('token drift (%s backend)', (backend) => {
  it("records a token's offset when a code is accepted off the current step, and centres the window on it", async () => {
    const s = await enrolled(backend)
    await withinOneStep(30, async () => {
      expectDecision(await check(s, 'alice', {code: await tokenCode(60)}), false, 'code_invalid') // two steps ahead: outside a window of 1
      expectDecision(await check(s, 'alice', {code: await tokenCode(30)}), true, 'code_accepted')
    })
    expect(await driftOf(s)).toBe(1)
    await withinOneStep(30, async () => {
      // the window is now around step +1: step +2 counts
      expectDecision(await check(s, 'alice', {code: await tokenCode(60)}), true, 'code_accepted')
    })
    expect(await driftOf(s)).toBe(2)
  })

  it('resyncs a token hours off from two consecutive codes; logins then follow it; audited, no codes in the trail', async () => {
    const s = await enrolled(backend)
    const ahead = 2 * 3600
    let first = ''
    let second = ''
    const r = await withinOneStep(30, async () => {
      ;[first, second] = [await tokenCode(ahead - 30), await tokenCode(ahead)]
      return s.run(['user:secret:resync', 'alice', '--code', '-', '--code', '-', '--json'], {input: `${first}\n${second}\n`})
    })
    expect(r.code, r.stderr).toBe(0)
    expect(r.json).toMatchObject({user: 'alice', changed: true, driftSteps: 240, driftSeconds: 7200})
    expect(await driftOf(s)).toBe(240)
    await withinOneStep(30, async () => {
      expectDecision(await check(s, 'alice', {code: await tokenCode(ahead + 30)}), true, 'code_accepted')
      expectDecision(await check(s, 'alice', {code: await tokenCode(0)}), false, 'code_invalid') // the host's own step is far outside
    })
    // the same two codes again: already used (replay protection on absolute steps)
    expect(expectJsonError(await s.run(['user:secret:resync', 'alice', '--code', first, '--code', second, '--json']), 1)).toMatch(/not newer/)
    const events = (await s.run(['audit', '--user', 'alice', '--json'])).json.events
    expect(events.map((e: any) => e.command)).toContain('user:secret:resync')
    expect(JSON.stringify(events)).not.toContain(second)
  })

  it('refuses codes found nowhere within a day (exit 1) and a user without a secret (exit 2), changing nothing', async () => {
    const s = await enrolled(backend)
    const far = await tokenCode(2 * 86_400)
    const farNext = await tokenCode(2 * 86_400 + 30)
    expect(expectJsonError(await s.run(['user:secret:resync', 'alice', '--code', far, '--code', farNext, '--json']), 1)).toMatch(/within a day/)
    expect(expectJsonError(await s.run(['user:secret:resync', 'bob', '--code', far, '--code', farNext, '--json']), 2)).toMatch(/no 2FA secret/)
    expect(expectJsonError(await s.run(['user:secret:resync', 'alice', '--code', far, '--json']), 2)).toMatch(/two consecutive codes/)
    expect(await driftOf(s)).toBe(0)
  })
})

const canRunuser = process.getuid?.() === 0 && spawnSync('runuser', ['-u', 'nobody', '--', 'true']).status === 0
it.skipIf(!canRunuser)('user:secret:resync is for root only (exit 4)', async () => {
  const s = await make('file')
  const r = spawnSync(
    'runuser',
    ['-u', 'nobody', '--', process.execPath, BIN, 'user:secret:resync', 'alice', '--code', '123456', '--code', '654321', '--store', s.path],
    {
      encoding: 'utf8',
    },
  )
  expect(r.status, r.stderr).toBe(4)
  expect(r.stderr).toMatch(/root only/)
})
