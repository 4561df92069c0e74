// Enrolment confirmation. On a real terminal (tmux), user:secret:renew shows the
// new key and asks for the app's first code before replacing the old secret; without a
// terminal, --pending + user:secret:confirm does the same in two steps. oathtool plays the app.
import {execFileSync} from 'node:child_process'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, afterEach, beforeEach, describe, expect, it} from 'vitest'
import {BIN, oathtool, tempStore} from '../helpers/cli.js'
import {awayFromBoundary, check, enable, expectDecision, expectJsonError, renew, type TempStore, wrongCode} from '../cli/support.js'

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

async function shownSecret(user: string): Promise<string> {
  const r = await store.run(['user:secret:show', user, '--qr', 'none', '--json'])
  expect(r.code, r.stderr).toBe(0)
  return r.json.secret
}

// A private tmux server, so that nothing else running tmux on the machine is touched.
const SOCKET = `tfactl-enrol-${process.pid}`
const tmux = (...args: string[]): string => execFileSync('tmux', ['-L', SOCKET, ...args], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`
let panes = 0

/** tfactl running on a terminal (a detached 200x80 tmux session); the shell prints EXIT=<code> after it. */
class Terminal {
  readonly name = `p${++panes}`

  constructor(args: string[], env: Record<string, string> = {}) {
    const assignments = Object.entries({NO_COLOR: '1', ...env}).map(([k, v]) => `${k}=${shellQuote(v)}`)
    const command = ['env -u SUDO_USER -u TFACTL_STORE', ...assignments, ...[process.execPath, BIN, ...args].map(shellQuote)].join(' ')
    tmux('new-session', '-d', '-s', this.name, '-x', '200', '-y', '80', `${command}; echo "EXIT=$?"; sleep 600`)
  }

  screen(): string {
    return tmux('capture-pane', '-p', '-J', '-t', this.name)
  }

  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const text = this.screen()
      if (pattern.test(text)) return text
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern} on the terminal:\n${text}`)
      await sleep(150)
    }
  }

  /** Types `text` literally, then Enter. */
  type(text: string): void {
    if (text) tmux('send-keys', '-t', this.name, '-l', text)
    tmux('send-keys', '-t', this.name, 'Enter')
  }

  key(name: string): void {
    tmux('send-keys', '-t', this.name, name)
  }

  async exitCode(): Promise<number> {
    return Number(/EXIT=(\d+)/.exec(await this.waitFor(/EXIT=\d+/))![1])
  }

  kill(): void {
    try {
      tmux('kill-session', '-t', this.name)
    } catch {
      // already gone
    }
  }
}

const PROMPT = /code from your app/
/** The base32 secret of the `key:` line (printed in groups of four). */
const keyOnScreen = (screen: string): string => /^key:\s+(.+)$/m.exec(screen)![1].replace(/\s+/g, '')

let term: Terminal | undefined
afterEach(() => {
  term?.kill()
  term = undefined
})
afterAll(() => {
  try {
    tmux('kill-server')
  } catch {
    // no server left
  }
})

describe('interactive enrolment on a terminal', () => {
  it('activates the new secret only once the code of the key on screen is typed, after a wrong one is refused', async () => {
    await enable(store)
    const {secret: old} = await renew(store, 'alice')
    term = new Terminal(['user:secret:renew', 'alice', '--qr', 'none', '--store', store.path])
    const screen = await term.waitFor(PROMPT)
    const fresh = keyOnScreen(screen)
    expect(fresh).toMatch(/^[A-Z2-7]{32}$/)
    expect(fresh).not.toBe(old)
    // While the question is open, the old secret is still the active one.
    expect(await shownSecret('alice')).toBe(old)
    term.type(wrongCode(await oathtool(fresh)))
    await term.waitFor(/does not match/)
    term.type(await oathtool(fresh))
    expect(await term.exitCode()).toBe(0)
    expect(term.screen()).toMatch(/alice: new secret active/)
    expect(await shownSecret('alice')).toBe(fresh)
    expectDecision(await check(store, 'alice', {code: await oathtool(old)}), false, 'code_invalid')
  })

  it('keeps the previous secret working when the enrolment is abandoned with an empty answer (exit 1)', async () => {
    await enable(store)
    const {secret: old} = await renew(store, 'alice')
    const before = store.bytes()
    term = new Terminal(['user:secret:renew', 'alice', '--qr', 'none', '--store', store.path])
    await term.waitFor(PROMPT)
    term.type('')
    expect(await term.exitCode()).toBe(1)
    expect(term.screen()).toMatch(/cancelled/)
    expect(store.bytes()).toEqual(before)
    expectDecision(await check(store, 'alice', {code: await oathtool(old)}), true, 'code_accepted')
  })

  it('keeps the previous state when the enrolment is interrupted with Ctrl-C', async () => {
    await enable(store)
    await renew(store, 'alice')
    const before = store.bytes()
    term = new Terminal(['user:secret:renew', 'alice', '--qr', 'none', '--store', store.path])
    await term.waitFor(PROMPT)
    term.key('C-c')
    expect(await term.exitCode()).not.toBe(0)
    expect(store.bytes()).toEqual(before)
  })

  it('does not ask with --no-verify: the new secret is active at once', async () => {
    await enable(store)
    const {secret: old} = await renew(store, 'alice')
    term = new Terminal(['user:secret:renew', 'alice', '--no-verify', '--qr', 'none', '--store', store.path])
    expect(await term.exitCode()).toBe(0)
    const screen = term.screen()
    expect(screen).not.toMatch(PROMPT)
    const fresh = keyOnScreen(screen)
    expect(fresh).not.toBe(old)
    expect(await shownSecret('alice')).toBe(fresh)
  })

  it('under sudo, asks (hidden) for a current code of your existing secret before the new key, then for the new one', async () => {
    await enable(store)
    const {secret: old} = await renew(store, 'alice')
    term = new Terminal(['user:secret:renew', '--qr', 'none', '--store', store.path], {SUDO_USER: 'alice'})
    const asked = await term.waitFor(/current 2FA code/)
    expect(asked).not.toMatch(/^key:/m)
    const proof = await oathtool(old)
    term.type(proof)
    const screen = await term.waitFor(PROMPT)
    expect(screen).not.toContain(proof)
    const fresh = keyOnScreen(screen)
    term.type(await oathtool(fresh))
    expect(await term.exitCode()).toBe(0)
    expect(await shownSecret('alice')).toBe(fresh)
  })
})

describe('pending enrolment without a terminal', () => {
  it('stores --pending apart and activates it only with user:secret:confirm and a right code', async () => {
    await enable(store)
    const {secret: old} = await renew(store, 'alice')
    const pending = await renew(store, 'alice', '--pending')
    expect(pending).toMatchObject({user: 'alice', changed: true, pending: true})
    const fresh = pending.secret
    expect(fresh).not.toBe(old)
    // Pending is not active: the old secret still logs in, the new one does not yet.
    expect(await shownSecret('alice')).toBe(old)
    expectDecision(await check(store, 'alice', {code: await oathtool(fresh)}), false, 'code_invalid')

    const wrong = await store.run(['user:secret:confirm', 'alice', '--code', wrongCode(await oathtool(fresh)), '--json'])
    expectJsonError(wrong, 1)
    expect(await shownSecret('alice')).toBe(old)
    expectDecision(await check(store, 'alice', {code: await oathtool(old)}), true, 'code_accepted')

    // Confirm with the previous step's code, so the current one is still fresh for a login.
    await awayFromBoundary(30, 8)
    const ok = await store.run(['user:secret:confirm', 'alice', '--code', await oathtool(fresh, {now: '30 seconds ago'}), '--json'])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.json).toEqual({user: 'alice', changed: true})
    expect(await shownSecret('alice')).toBe(fresh)
    expectDecision(await check(store, 'alice', {code: await oathtool(fresh)}), true, 'code_accepted')
    expectDecision(await check(store, 'alice', {code: await oathtool(old)}), false, 'code_invalid')
  })
})
