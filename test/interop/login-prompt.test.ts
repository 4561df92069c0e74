// Interop: `login:prompt` as /etc/profile.d runs it. In a real terminal (a tmux pane, whose shell
// is a session leader like a login shell) it invites a user without a secret once per login
// session; everywhere else, and on any error, it prints nothing and exits 0.
import {execFileSync} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {BIN, oathtool, tempStore} from '../helpers/cli.js'
import {decodeQrImage, terminalTextToPng} from '../helpers/term-image.js'
import {awayFromBoundary, enable, renew, type TempStore, writeStore} from '../cli/support.js'

const USER = 'tester'

let store: TempStore
let runtime: string
beforeEach(() => {
  store = tempStore()
  runtime = join(store.dir, 'runtime')
  mkdirSync(runtime, {mode: 0o700})
})
afterEach(() => {
  tmux?.kill()
  tmux = undefined
  store.cleanup()
})

const markers = (): string[] => (existsSync(join(runtime, 'tfactl')) ? readdirSync(join(runtime, 'tfactl')) : [])

/** A tmux server of its own whose panes run bash with `p` = login:prompt as the profile script would. */
class Tmux {
  private readonly socket = join(store.dir, 'tmux.sock')
  private readonly shell: string
  private runs = 0
  private window = 0

  constructor() {
    const rc = join(store.dir, 'bashrc')
    writeFileSync(
      rc,
      [
        "PS1='$ '",
        'unset HISTFILE',
        'set -o pipefail',
        `p() { XDG_RUNTIME_DIR='${runtime}' SUDO_USER=${USER} NO_COLOR=1 '${process.execPath}' '${BIN}' login:prompt "$@"; }`,
        '',
      ].join('\n'),
    )
    const shell = `env -i PATH='${process.env.PATH}' HOME='${store.dir}' TERM=xterm-256color bash --noprofile --rcfile '${rc}' -i`
    this.shell = shell
    this.tmux('new-session', '-d', '-x', '200', '-y', '80', '-s', 'tfa', shell)
  }

  private tmux(...args: string[]): string {
    return execFileSync('tmux', ['-f', '/dev/null', '-S', this.socket, ...args], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
  }

  /** A new window: a new pane shell, hence a new login session. */
  newSession(): void {
    this.window++
    this.tmux('new-window', '-t', 'tfa', this.shell)
  }

  screen(escapes = false): string {
    return this.tmux('capture-pane', '-p', ...(escapes ? ['-e', '-N'] : []), '-t', `tfa:${this.window}`)
  }

  /** One send-keys call: `keys('-l', text)` types text literally, `keys('Enter')` presses a key. */
  keys(...keys: string[]): void {
    this.tmux('send-keys', '-t', `tfa:${this.window}`, ...keys)
  }

  async waitFor(pattern: RegExp, timeoutMs = 45_000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const text = this.screen()
      if (pattern.test(text)) return text
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; screen:\n${text}`)
      await new Promise((r) => setTimeout(r, 150))
    }
  }

  /** Types `p ARGS; echo "DONEn:$?"`; returns n, for `result`. */
  start(args: string): number {
    const n = ++this.runs
    this.keys('-l', `p ${args}; echo "DONE${n}:$?"`)
    this.keys('Enter')
    return n
  }

  /** Runs `p ARGS` to its end; returns its exit code and what it printed. */
  async run(args: string): Promise<{code: number; output: string}> {
    return this.result(this.start(args))
  }

  /** Waits for run n to end: its exit code, and the lines between its command line and its end. */
  async result(n: number): Promise<{code: number; output: string}> {
    const done = new RegExp(`^DONE${n}:(\\d+)$`, 'm')
    const lines = (await this.waitFor(done)).split('\n')
    const end = lines.findIndex((l) => done.test(l))
    const begin = lines.slice(0, end).findLastIndex((l) => l.includes(`echo "DONE${n}:`))
    return {
      code: Number(done.exec(lines[end])![1]),
      output: lines
        .slice(begin + 1, end)
        .join('\n')
        .trim(),
    }
  }

  kill(): void {
    try {
      this.tmux('kill-server')
    } catch {
      // already gone
    }
  }
}

let tmux: Tmux | undefined

const INVITATION = /Set up an authenticator app now\?/
const storeArg = () => `--store '${store.path}'`

describe('login:prompt without a terminal (scripts, non-interactive shells)', () => {
  const quiet = async (args: string[]) => {
    // NODE_ENV as a login shell has it (vitest sets "test", which turns on oclif's developer warnings).
    const env = {SUDO_USER: USER, XDG_RUNTIME_DIR: runtime, XDG_SESSION_ID: '', NODE_ENV: 'production'}
    const r = await store.run(['login:prompt', ...args], {env})
    expect({code: r.code, stdout: r.stdout, stderr: r.stderr}).toEqual({code: 0, stdout: '', stderr: ''})
  }

  it('prints nothing and exits 0 for a user without a secret while 2FA is on, and uses up no invitation', async () => {
    await enable(store)
    await quiet([])
    expect(markers()).toEqual([])
  })

  it('prints nothing and exits 0 with a corrupt store', async () => {
    writeStore(store, '{"broken')
    await quiet([])
  })

  it('prints nothing and exits 0 while 2FA is off', async () => {
    await quiet([])
  })

  it('prints nothing and exits 0 for an unknown flag', async () => {
    await enable(store)
    await quiet(['--no-such-flag'])
  })
})

describe('login:prompt in a terminal', () => {
  it('invites once per login session: "n" skips, a second run in that session says nothing, a new session is invited again', async () => {
    await enable(store)
    tmux = new Tmux()

    // Not interactive although the shell is: stdin or stdout is not the terminal.
    expect(await tmux.run(`${storeArg()} </dev/null`)).toEqual({code: 0, output: ''})
    expect(await tmux.run(`${storeArg()} | cat`)).toEqual({code: 0, output: ''})
    expect(markers()).toEqual([])

    const first = tmux.start(storeArg())
    const invited = await tmux.waitFor(INVITATION)
    expect(invited).toContain(`${USER} has no second factor yet`)
    tmux.keys('n')
    tmux.keys('Enter')
    const skipped = await tmux.result(first)
    expect(skipped.code).toBe(0)
    expect(skipped.output).toMatch(/Skipped/)
    expect(markers()).toHaveLength(1)
    expect(statSync(join(runtime, 'tfactl')).mode & 0o777).toBe(0o700)

    expect(await tmux.run(storeArg())).toEqual({code: 0, output: ''})
    expect((await store.run(['user:list', '--json'])).json.users).toEqual([])

    tmux.newSession()
    const other = tmux.start(storeArg())
    await tmux.waitFor(INVITATION)
    tmux.keys('n')
    tmux.keys('Enter')
    expect((await tmux.result(other)).code).toBe(0)
    expect(markers()).toHaveLength(2)
  }, 120_000)

  it('answering yes runs the renew flow: the QR code decodes to the URI shown, and the first code enrols the user', async () => {
    await enable(store)
    tmux = new Tmux()
    const run = tmux.start(storeArg())
    await tmux.waitFor(INVITATION)
    tmux.keys('y')
    tmux.keys('Enter')
    const screen = await tmux.waitFor(/code from your app \(6 digits/)

    const key = /^key:\s+([A-Z2-7 ]+)$/m.exec(screen)![1].replace(/ /g, '')
    const uri = /^uri:\s+(\S+)$/m.exec(screen)![1]
    expect(uri).toContain(`secret=${key}`)
    const png = join(store.dir, 'screen.png')
    terminalTextToPng(tmux.screen(true), 'dark', png)
    expect(decodeQrImage(png)).toEqual([uri])

    await awayFromBoundary(30, 4)
    tmux.keys('-l', await oathtool(key))
    tmux.keys('Enter')
    expect((await tmux.result(run)).code).toBe(0)
    const shown = await store.run(['user:secret:show', USER, '--qr', 'none', '--json'])
    expect(shown.json.secret).toBe(key)

    // Enrolled now: a new session is not invited.
    tmux.newSession()
    expect(await tmux.run(storeArg())).toEqual({code: 0, output: ''})
  }, 120_000)

  it('says nothing to a user who has a secret, while 2FA is off, or when the store is corrupt', async () => {
    await enable(store)
    await renew(store, USER)
    const off = tempStore()
    const corrupt = tempStore()
    try {
      writeStore(corrupt, '{"broken')
      tmux = new Tmux()
      expect(await tmux.run(storeArg())).toEqual({code: 0, output: ''})
      expect(await tmux.run(`--store '${off.path}'`)).toEqual({code: 0, output: ''})
      expect(await tmux.run(`--store '${corrupt.path}'`)).toEqual({code: 0, output: ''})
      expect(markers()).toEqual([])
    } finally {
      off.cleanup()
      corrupt.cleanup()
    }
  }, 120_000)
})
