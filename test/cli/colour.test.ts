// Colour where a person scans the output, and only there: on a real pseudo-terminal (util-linux
// `script`) login:check's verdict and the error prefix are coloured; with NO_COLOR=1, TERM=dumb,
// piped, or under --json there is not one escape code.
import {execFile, spawnSync} from 'node:child_process'
import {describe, expect, it} from 'vitest'
import {BIN, oathtool} from '../helpers/cli.js'
import {enable, renew, trackedStores} from './support.js'

const newStore = trackedStores()
const ESC = '\x1b['
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** Runs the CLI on a pseudo-terminal (stdin, stdout and stderr all on it); returns what it printed. */
function onTerminal(args: string[], env: NodeJS.ProcessEnv = {}): {code: number | null; out: string} {
  const base: NodeJS.ProcessEnv = {...process.env, TERM: 'xterm-256color', ...env}
  // CI=true (as CI runs us) makes Node's colour-depth check say "no colour": a person's terminal has no CI variable
  for (const k of ['NO_COLOR', 'FORCE_COLOR', 'NODE_DISABLE_COLORS', 'TFACTL_STORE', 'CI']) if (!(k in env)) delete base[k]
  const r = spawnSync('script', ['-qec', [process.execPath, BIN, ...args].map(quote).join(' '), '/dev/null'], {env: base, encoding: 'utf8', timeout: 30_000})
  return {code: r.status, out: r.stdout}
}

/** Runs the CLI with stdout and stderr piped, colour not forbidden by the environment. */
function piped(args: string[]): Promise<{code: number; out: string}> {
  const env: NodeJS.ProcessEnv = {...process.env, TERM: 'xterm-256color'}
  for (const k of ['NO_COLOR', 'FORCE_COLOR', 'NODE_DISABLE_COLORS', 'TFACTL_STORE']) delete env[k]
  return new Promise((done) =>
    execFile(process.execPath, [BIN, ...args], {env}, (error, stdout, stderr) => done({code: error ? Number(error.code) : 0, out: stdout + stderr})),
  )
}

async function enrolled() {
  const store = newStore()
  await enable(store)
  const {secret} = await renew(store, 'alice')
  return {store, secret: secret as string}
}

describe('colour in human output', () => {
  it('colours allowed green and denied red on a terminal (the login fast path)', async () => {
    const {store, secret} = await enrolled()
    const ok = onTerminal(['login:check', 'alice', '--code', await oathtool(secret), '--store', store.path])
    expect(ok.code, ok.out).toBe(0)
    expect(ok.out).toContain(`alice: ${ESC}32mallowed${ESC}39m (code_accepted)`)
    const no = onTerminal(['login:check', 'alice', '--code', 'nope', '--store', store.path])
    expect(no.code, no.out).toBe(1)
    expect(no.out).toContain(`alice: ${ESC}31mdenied${ESC}39m`)
  })

  it('colours the error prefix red on a terminal (the oclif path)', () => {
    const store = newStore()
    const r = onTerminal(['login:check', 'alice', '--bogus', '--store', store.path])
    expect(r.code, r.out).toBe(2)
    expect(r.out).toContain(`${ESC}31mtfactl:${ESC}39m `)
  })

  it("colours LOCKED OUT in user:list and doctor's findings on a terminal, not when piped", async () => {
    const store = newStore()
    await enable(store, '--max-failures', '1')
    await renew(store, 'alice')
    const no = onTerminal(['login:check', 'alice', '--code', '000000', '--store', store.path])
    expect(no.code, no.out).toBe(1)
    const list = onTerminal(['user:list', '--store', store.path])
    expect(list.code, list.out).toBe(0)
    expect(list.out).toContain(`${ESC}31mLOCKED OUT${ESC}39m`)
    const doctor = onTerminal(['doctor', '--store', store.path, '--pam-file', '/nonexistent', '--sshd-config', '/nonexistent'])
    expect(doctor.out).toMatch(/^\x1b\[32mok +\x1b\[39m {2}store: /m)
    const plain = await piped(['user:list', '--store', store.path])
    expect(plain.out).toContain('LOCKED OUT')
    expect((await piped(['doctor', '--store', store.path])).out + plain.out).not.toContain(ESC)
  })

  for (const [name, env] of [
    ['NO_COLOR=1', {NO_COLOR: '1'}],
    ['TERM=dumb', {TERM: 'dumb'}],
  ] as const) {
    it(`prints no escape code on a terminal with ${name}`, async () => {
      const {store, secret} = await enrolled()
      const ok = onTerminal(['login:check', 'alice', '--code', await oathtool(secret), '--store', store.path], env)
      expect(ok.code, ok.out).toBe(0)
      expect(ok.out).toContain('alice: allowed (code_accepted)')
      const bad = onTerminal(['login:check', 'alice', '--bogus', '--store', store.path], env)
      expect(bad.code).toBe(2)
      expect(ok.out + bad.out).not.toContain(ESC)
    })
  }

  it('prints no escape code when piped, nor under --json on a terminal', async () => {
    const {store, secret} = await enrolled()
    const ok = await piped(['login:check', 'alice', '--code', await oathtool(secret), '--store', store.path])
    expect(ok.code, ok.out).toBe(0)
    expect(ok.out).toContain('alice: allowed (code_accepted)')
    const no = await piped(['login:check', 'alice', '--code', 'nope', '--store', store.path])
    expect(no.code).toBe(1)
    const bad = await piped(['login:check', 'alice', '--bogus', '--store', store.path])
    expect(bad.code).toBe(2)
    const json = onTerminal(['login:check', 'alice', '--code', 'nope', '--json', '--store', store.path])
    expect(json.code, json.out).toBe(1)
    expect(json.out).toContain('"reason": "code_invalid"')
    for (const r of [ok, no, bad, json]) expect(r.out).not.toContain(ESC)
  })
})
