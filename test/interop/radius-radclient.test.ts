// A real RADIUS client no one here wrote: FreeRADIUS's radclient (freeradius-utils) against the
// real `tfactl radius:serve`, in code mode and in challenge mode (State sent back). radclient
// checks the Response Authenticator and the Message-Authenticator of every answer.
import {spawn, spawnSync} from 'node:child_process'
import {get} from 'node:http'
import {createServer} from 'node:net'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {hotp, timeStep} from '../../src/core/totp.js'
import {tempStore, tfactl} from '../helpers/cli.js'
import {PG_BIN, type PgServer, startPostgres} from '../helpers/postgres.js'
import {radiusRequest, type Responder, startResponder, writeClients} from '../helpers/radius.js'

const missing = spawnSync('sh', ['-c', 'command -v radclient']).status === 0 ? null : 'no radclient (apt-get install freeradius-utils)'
if (missing) console.warn(`[radclient] skipped: ${missing}`)

interface Reply {
  status: number | null
  out: string
  code?: string
  attrs: Record<string, string>
}

/** radclient -x: sends the attribute lines, returns the reply code and attributes it printed. */
function radclient(port: number, secret: string, attrs: string[], timeout = 2, host = '127.0.0.1', command: 'auth' | 'status' = 'auth'): Promise<Reply> {
  return new Promise((resolve) => {
    const child = spawn('radclient', ['-x', '-r', '1', '-t', String(timeout), `${host.includes(':') ? `[${host}]` : host}:${port}`, command, secret])
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    child.stdin.end(attrs.join('\n') + '\n')
    child.on('close', (status) => {
      const received = out.split(/^Received /m)[1]
      const code = received ? /^(Access-\w+)/.exec(received)?.[1] : undefined
      const attributes: Record<string, string> = {}
      for (const m of (received ?? '').matchAll(/^\t(\S+) = (.*)$/gm)) attributes[m[1]] = m[2]
      resolve({status, out, code, attrs: attributes})
    })
  })
}

describe.skipIf(missing !== null)('radius:serve answers FreeRADIUS radclient', {timeout: 120_000}, () => {
  const store = tempStore()
  const secret = 'radclient-secret'
  let codeMode: Responder
  let challengeMode: Responder
  let key: Buffer
  let lastStep = -1
  const clients = (name: string, line: string, extra?: string) => writeClients(join(store.dir, name), [line + (extra ? ` ${extra}` : ''), `# ${name}`])

  /** A code of a step after the last one used (the replay rule), waiting for the clock if needed. */
  async function freshCode(): Promise<string> {
    for (;;) {
      const now = timeStep(Date.now(), 30)
      const step = Math.max(lastStep + 1, now - 1)
      if (step <= now + 1) {
        lastStep = step
        return hotp(key, step, 6)
      }
      await new Promise((r) => setTimeout(r, 1000))
    }
  }

  beforeAll(async () => {
    expect((await store.run(['twofactor:enable', '--ssh', '--fail-delay', '0', '--window', '1', '--max-failures', '3'])).code).toBe(0)
    key = base32Decode((await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])).json.users[0].secret)!
    await store.run(['user:secret:renew', 'lock', '--qr', 'none'])
    codeMode = await startResponder(['--clients', clients('code', `127.0.0.1/32 ${secret} code require-ma`), '--store', store.path])
    challengeMode = await startResponder(['--clients', clients('challenge', `127.0.0.0/8 ${secret} challenge`), '--store', store.path])
  })
  afterAll(async () => {
    await codeMode?.stop()
    await challengeMode?.stop()
    store.cleanup()
  })

  const signed = (...lines: string[]) => [...lines, 'Message-Authenticator = 0x00']

  it('code mode: accepts a code once; a replayed or wrong code is rejected; a user without a secret is refused', async () => {
    const code = await freshCode()
    const ok = await radclient(codeMode.port, secret, signed('User-Name = alice', `User-Password = ${code}`))
    expect(ok.code, ok.out).toBe('Access-Accept')
    expect(ok.attrs['Message-Authenticator']).toMatch(/^0x[0-9a-f]{32}$/)
    expect((await radclient(codeMode.port, secret, signed('User-Name = alice', `User-Password = ${code}`))).code).toBe('Access-Reject')
    expect((await radclient(codeMode.port, secret, signed('User-Name = alice', 'User-Password = 000000x'))).code).toBe('Access-Reject')
    expect((await radclient(codeMode.port, secret, signed('User-Name = nora', 'User-Password = anything'))).code).toBe('Access-Reject')
    const noraLine = '"user":"nora","outcome":"denied","reason":"no_secret"'
    for (let i = 0; i < 100 && !readFileSync(`${store.path}.audit.log`, 'utf8').includes(noraLine); i++) await new Promise((r) => setTimeout(r, 50)) // written after the answer
    const audit = readFileSync(`${store.path}.audit.log`, 'utf8')
    expect(audit).toContain('"command":"radius:serve","user":"alice","outcome":"allowed","reason":"code_accepted","client":"127.0.0.1"')
    expect(audit).toContain('"reason":"code_replayed"')
    expect(audit).toContain(noraLine)
    expect(audit).not.toContain(code)
  })

  it('code mode with require-ma: a request without a Message-Authenticator is dropped', async () => {
    const r = await radclient(codeMode.port, secret, ['User-Name = nora', 'User-Password = x'], 1)
    expect(r.code).toBeUndefined()
    expect(r.out).toMatch(/No reply from server/)
  })

  it('code mode: recovery codes and bypass codes, once each; lockout after failures', async () => {
    const recovery = (await store.run(['user:recovery:generate', 'alice', '--count', '2', '--json'])).json.codes as string[]
    expect((await radclient(codeMode.port, secret, signed('User-Name = alice', `User-Password = ${recovery[0]}`))).code).toBe('Access-Accept')
    expect((await radclient(codeMode.port, secret, signed('User-Name = alice', `User-Password = ${recovery[0]}`))).code).toBe('Access-Reject')
    for (let i = 0; i < 3; i++)
      expect((await radclient(codeMode.port, secret, signed('User-Name = lock', 'User-Password = 000000'))).code).toBe('Access-Reject')
    expect((await radclient(codeMode.port, secret, signed('User-Name = lock', 'User-Password = 000000'))).code).toBe('Access-Reject')
    const bypass = (await store.run(['user:bypass', 'lock', '--json'])).json.code as string
    expect((await radclient(codeMode.port, secret, signed('User-Name = lock', `User-Password = ${bypass}`))).code).toBe('Access-Accept')
    expect((await radclient(codeMode.port, secret, signed('User-Name = lock', `User-Password = ${bypass}`))).code).toBe('Access-Reject')
    expect(readFileSync(`${store.path}.audit.log`, 'utf8')).toMatch(/"user":"lock","outcome":"denied","reason":"locked_out"/)
  })

  it('challenge mode: Access-Challenge with State, Reply-Message and Prompt = No-Echo; the code comes back with the State', async () => {
    const first = await radclient(challengeMode.port, secret, ['User-Name = alice', 'User-Password = unix-password'])
    expect(first.code, first.out).toBe('Access-Challenge')
    expect(first.attrs['Reply-Message']).toBe('"2FA code: "')
    expect(first.attrs.Prompt).toBe('No-Echo')
    const state = first.attrs.State
    expect(state).toMatch(/^0x[0-9a-f]+$/)
    const code = await freshCode()
    const second = await radclient(challengeMode.port, secret, ['User-Name = alice', `User-Password = ${code}`, `State = ${state}`])
    expect(second.code, second.out).toBe('Access-Accept')
    const replay = await radclient(challengeMode.port, secret, ['User-Name = alice', `User-Password = ${code}`, `State = ${state}`])
    expect(replay.code).toBe('Access-Reject')
    const forged = await radclient(challengeMode.port, secret, ['User-Name = alice', `User-Password = ${code}`, `State = 0x01${'00'.repeat(36)}`])
    expect(forged.code).toBe('Access-Reject')
    const audit = readFileSync(`${store.path}.audit.log`, 'utf8')
    expect(audit).not.toContain('unix-password')
    expect(audit).toContain('"reason":"state_replayed"')
  })

  it('challenge mode: a user who needs no code is accepted at once; a request that proves no secret gets no answer', async () => {
    expect((await radclient(challengeMode.port, secret, ['User-Name = nora', 'User-Password = unix-password'])).code).toBe('Access-Accept')
    expect((await radclient(challengeMode.port, secret, signed('User-Name = nora'))).code).toBe('Access-Accept') // signed: no password needed
    const unsigned = await radclient(challengeMode.port, secret, ['User-Name = nora'], 1) // neither signed nor a password
    expect(unsigned.code).toBeUndefined()
    expect(unsigned.out).toMatch(/No reply from server/)
  })

  it('a failing request waits its fail delay; the others are answered meanwhile; SIGTERM lets it finish and exits 0', async () => {
    expect((await store.run(['twofactor:enable', '--fail-delay', '3000'])).code).toBe(0)
    try {
      const started = Date.now()
      let failingAnswered = false
      const failing = radiusRequest({port: codeMode.port, secret, user: 'alice', password: '999999x', timeoutMs: 10_000}).then((r) => {
        failingAnswered = true
        return {r, ms: Date.now() - started}
      })
      await new Promise((r) => setTimeout(r, 100))
      const quick = await radiusRequest({port: codeMode.port, secret, user: 'nora', password: 'x'}) // no secret: refused at once
      expect(quick).toMatchObject({kind: 'reject'})
      expect(failingAnswered, 'the other request was answered only after the failing one').toBe(false)
      const exit = codeMode.stop() // SIGTERM while the failing request waits
      const {r, ms} = await failing
      expect(r).toMatchObject({kind: 'reject'})
      expect(ms).toBeGreaterThanOrEqual(2900)
      expect(await exit).toBe(0)
    } finally {
      await store.run(['twofactor:enable', '--fail-delay', '0'])
    }
  })

  it('reads the clients file again on SIGHUP; a bad one keeps the previous clients', async () => {
    const waitLog = async (re: RegExp) => {
      for (let i = 0; i < 100 && !re.test(challengeMode.logs()); i++) await new Promise((r) => setTimeout(r, 50))
      expect(challengeMode.logs()).toMatch(re)
    }
    clients('challenge', `10.0.0.0/8 ${secret} challenge`)
    challengeMode.child.kill('SIGHUP')
    await waitLog(/SIGHUP: 1 client network\(s\) read/)
    expect(await radiusRequest({port: challengeMode.port, secret, user: 'nora', timeoutMs: 500})).toBe('timeout') // 127.0.0.1 is no longer listed
    clients('challenge', `127.0.0.1 ${secret} challenge`, 'not-a-mode')
    challengeMode.child.kill('SIGHUP')
    await waitLog(/SIGHUP: kept the previous clients: .*:1: unknown word "not-a-mode"/)
    expect(challengeMode.child.exitCode).toBeNull()
  })
})

/** GET http://127.0.0.1:PORT/PATH with Node's client: the status and the body. */
function scrape(port: number, path = '/metrics'): Promise<{status: number; type: string; body: string}> {
  return new Promise((resolve, reject) => {
    get({host: '127.0.0.1', port, path}, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d) => (body += d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, type: String(res.headers['content-type']), body}))
    }).on('error', reject)
  })
}

const counter = (text: string, labels: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`tfactl_radius_requests_total{${labels}} `))
  return line ? Number(line.split(' ')[1]) : 0
}

describe.skipIf(missing !== null)('radius:serve over IPv6 ([::1]) with Status-Server and metrics, asked by radclient', {timeout: 120_000}, () => {
  const store = tempStore()
  const secret = 'six-secret'
  let responder: Responder
  let metricsPort: number
  let key: Buffer

  beforeAll(async () => {
    expect((await store.run(['twofactor:enable', '--ssh', '--fail-delay', '0', '--window', '1'])).code).toBe(0)
    key = base32Decode((await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])).json.users[0].secret)!
    const clients = writeClients(join(store.dir, 'clients6'), [`::1 ${secret} code`])
    responder = await startResponder(['--clients', clients, '--store', store.path, '--metrics', '127.0.0.1:0'], {}, '[::1]:0')
    metricsPort = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(responder.logs())?.[1])
  })
  afterAll(async () => {
    expect(await responder?.stop()).toBe(0)
    store.cleanup()
  })

  it('answers radclient over ::1: a code is accepted, a wrong one rejected', async () => {
    expect(responder.logs()).toMatch(/answering on \[::1\]:\d+/)
    const code = hotp(key, timeStep(Date.now(), 30), 6)
    const ok = await radclient(responder.port, secret, ['User-Name = alice', `User-Password = ${code}`, 'Message-Authenticator = 0x00'], 2, '::1')
    expect(ok.code, ok.out).toBe('Access-Accept')
    expect(ok.out).toMatch(/from \[::1\]:\d+/)
    const bad = await radclient(responder.port, secret, ['User-Name = alice', 'User-Password = 000000x'], 2, '::1')
    expect(bad.code, bad.out).toBe('Access-Reject')
  })

  it('answers a signed Status-Server with a bare Access-Accept; an unsigned one, or one under a wrong secret, gets nothing', async () => {
    const probe = await radclient(responder.port, secret, ['Message-Authenticator = 0x00'], 2, '::1', 'status')
    expect(probe.code, probe.out).toBe('Access-Accept')
    expect(Object.keys(probe.attrs)).toEqual(['Message-Authenticator']) // checked by radclient; nothing else said
    const unsigned = await radclient(responder.port, secret, ['User-Name = alice'], 1, '::1', 'status')
    expect(unsigned.code).toBeUndefined()
    expect(unsigned.out).toMatch(/No reply from server/)
    const wrong = await radclient(responder.port, 'not-the-secret', ['Message-Authenticator = 0x00'], 1, '::1', 'status')
    expect(wrong.code).toBeUndefined()
  })

  it('serves Prometheus text at /metrics whose counters move with the traffic; no user name, code or secret in it; other paths 404', async () => {
    const before = await scrape(metricsPort)
    expect(before.status).toBe(200)
    expect(before.type).toBe('text/plain; version=0.0.4; charset=utf-8')
    const code = hotp(key, timeStep(Date.now(), 30) + 1, 6)
    const sent = ['User-Name = alice', `User-Password = ${code}`, 'Message-Authenticator = 0x00']
    expect((await radclient(responder.port, secret, sent, 2, '::1')).code).toBe('Access-Accept')
    expect((await radclient(responder.port, secret, sent, 2, '::1')).code).toBe('Access-Reject') // the same code again
    expect((await radclient(responder.port, secret, ['User-Name = nobody-here', 'User-Password = 123456'], 2, '::1')).code).toBe('Access-Reject')
    expect((await radclient(responder.port, secret, ['Message-Authenticator = 0x00'], 2, '::1', 'status')).code).toBe('Access-Accept')
    const after = (await scrape(metricsPort)).body
    const moved = (labels: string) => counter(after, labels) - counter(before.body, labels)
    expect(moved('client="::1",outcome="allowed",reason="code_accepted"')).toBe(1)
    expect(moved('client="::1",outcome="denied",reason="code_replayed"')).toBe(1)
    expect(moved('client="::1",outcome="denied",reason="no_secret"')).toBe(1)
    expect(moved('client="::1",outcome="status",reason="status_server"')).toBe(1)
    expect(counter(after, 'client="::1",outcome="dropped",reason="noma"')).toBeGreaterThanOrEqual(1) // the unsigned probe above
    const count = (text: string) => Number(/^tfactl_radius_request_duration_seconds_count (\d+)$/m.exec(text)?.[1])
    expect(count(after) - count(before.body)).toBe(3)
    expect(after).toMatch(/^tfactl_radius_store_errors_total 0$/m)
    expect(after).not.toMatch(/db_pool/) // a file store
    for (const secretish of ['alice', 'nobody-here', code, secret]) expect(after).not.toContain(secretish)
    expect((await scrape(metricsPort, '/')).status).toBe(404)
    expect((await scrape(metricsPort, '/metrics/x')).status).toBe(404)
  })
})

const pgMissing = existsSync(join(PG_BIN, 'initdb')) ? null : `no ${PG_BIN}/initdb (apt-get install postgresql)`

describe.skipIf((missing ?? pgMissing) !== null)('radius:serve --metrics with a PostgreSQL store: pool gauges and store errors', {timeout: 120_000}, () => {
  const store = tempStore()
  const secret = 'pg-metrics-secret'
  let pg: PgServer
  let responder: Responder | undefined
  let args: string[]

  beforeAll(async () => {
    pg = await startPostgres()
    args = ['--store', await pg.database('tfactl'), '--key-file', join(store.dir, 'key', 'tfactl.key')]
    expect((await tfactl(['twofactor:enable', '--ssh', '--fail-delay', '0', ...args])).code).toBe(0)
    const clients = writeClients(join(store.dir, 'clients'), [`127.0.0.1 ${secret} challenge`])
    responder = await startResponder(['--clients', clients, ...args, '--metrics', '127.0.0.1:0', '--db-connections', '4'])
  }, 60_000)
  afterAll(async () => {
    await responder?.stop()
    pg?.destroy()
    store.cleanup()
  })

  it('shows the pool in use and waiting; a store that cannot be reached counts a store error', async () => {
    const port = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(responder!.logs())?.[1])
    const nora = ['User-Name = nora', 'User-Password = unix-password']
    expect((await radclient(responder!.port, secret, nora)).code).toBe('Access-Accept') // no secret: in at once
    let text = (await scrape(port)).body
    expect(text).toMatch(/^tfactl_radius_db_pool_in_use 0$/m) // idle between requests
    expect(text).toMatch(/^tfactl_radius_db_pool_waiting 0$/m)
    expect(counter(text, 'client="127.0.0.1",outcome="allowed",reason="no_secret"')).toBe(1)
    pg.stop()
    try {
      expect((await radclient(responder!.port, secret, nora, 5)).code).toBe('Access-Reject') // fails closed
      text = (await scrape(port)).body
      expect(text).toMatch(/^tfactl_radius_store_errors_total 1$/m)
      expect(counter(text, 'client="127.0.0.1",outcome="error",reason="store_unavailable"')).toBe(1)
    } finally {
      pg.start()
    }
  })
})

describe('radius:serve refuses a bad start', () => {
  const store = tempStore()
  afterAll(() => store.cleanup())
  it('names the clients file when it is open to others or malformed, and a bad --listen', async () => {
    const open = writeClients(join(store.dir, 'open'), ['127.0.0.1 s'])
    spawnSync('chmod', ['644', open])
    let r = await store.run(['radius:serve', '--clients', open])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${open}: holds shared secrets but can be read or written by group or others`)
    const bad = writeClients(join(store.dir, 'bad'), ['127.0.0.1 s', '300.1.1.1 t'])
    r = await store.run(['radius:serve', '--clients', bad])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`tfactl: ${bad}:2: "300.1.1.1" is not an IPv4 or IPv6 address\n`)
    r = await store.run(['radius:serve', '--clients', bad.replace('bad', 'open'), '--listen', 'localhost'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--listen "localhost" is not ADDR:PORT')
  })

  it('exits 2 with one line when the --metrics address is malformed or cannot be bound', async () => {
    const good = writeClients(join(store.dir, 'good'), ['127.0.0.1 s challenge'])
    let r = await store.run(['radius:serve', '--clients', good, '--listen', '127.0.0.1:0', '--metrics', '9100'])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('tfactl: --metrics "9100" is not ADDR:PORT (e.g. 127.0.0.1:1812 or [::]:1812)\n')
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()))
    try {
      const port = (taken.address() as {port: number}).port
      r = await store.run(['radius:serve', '--clients', good, '--listen', '127.0.0.1:0', '--metrics', `127.0.0.1:${port}`])
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(new RegExp(`^tfactl: cannot serve metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*\n$`))
    } finally {
      taken.close()
    }
  })
})
