// Hardening: a hostile local user (the throwaway system user tfactl-mallory-<pid>, via
// runuser) and an unlucky admin (odd paths, shared directories, a full disk). Each block is one
// class of problem; every test here failed before the fix.
import {execFileSync, spawn} from 'node:child_process'
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {oathtool, ROOT, type Run, tfactl} from '../helpers/cli.js'
import {MALLORY, mallory, tfactlAsMallory} from '../helpers/mallory.js'
import {check, enable, expectDecision, expectJsonError, hasStack, renew, trackedStores, type TempStore} from './support.js'

const newStore = trackedStores()
const scratch: string[] = []
afterAll(() => {
  for (const d of scratch) rmSync(d, {recursive: true, force: true})
})
/** A private scratch directory (0700, root's), removed after the file. */
function scratchDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tfactl-hard-'))
  scratch.push(d)
  return d
}
const mode = (p: string): number => statSync(p).mode & 0o7777
const sudo = (user: string) => ({env: {SUDO_USER: user}})
/** The audit log of the store at `path` (named after the store; `audit.log` in the layout before). */
const auditFile = (path: string): string => (existsSync(`${path}.audit.log`) ? `${path}.audit.log` : join(dirname(path), 'audit.log'))

/** The oclif command (not the login fast path), with stdin. */
function viaOclif(args: string[], input: string): Promise<Run> {
  return new Promise((done) => {
    const script = `const {run, flush} = await import('@oclif/core'); await run(${JSON.stringify(args)}, ${JSON.stringify(ROOT)}).catch(async (e) => { await import('@oclif/core').then(o => o.handle(e)) }); await flush()`
    const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1'}
    delete env.NODE_ENV
    delete env.TFACTL_STORE
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {cwd: ROOT, env})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.stdin.end(input)
    child.on('close', (code) => {
      let json: any
      try {
        json = JSON.parse(stdout)
      } catch {
        json = undefined
      }
      done({code: code ?? -1, stdout, stderr, json})
    })
  })
}

describe('--qr-dir: QR images are new private files in a directory nobody else can write', () => {
  it('refuses a directory others can write (exit 2), enrols nobody, and never writes through files or links the attacker planted', async () => {
    const {uid, gid} = mallory()
    const store = newStore()
    await enable(store)
    const shared = scratchDir()
    chmodSync(shared, 0o1777)
    const victim = join(scratchDir(), 'victim')
    chmodSync(dirname(victim), 0o777)
    // The attacker's traps: a file of theirs to read the PNG, a link to make root write elsewhere.
    execFileSync('runuser', ['-u', MALLORY, '--', 'sh', '-c', `umask 0; : > ${shared}/alice.png; ln -s ${victim} ${shared}/alice.svg`])
    const r = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--qr-dir', shared, '--json'])
    expect(expectJsonError(r, 2)).toMatch(/writable by group or others/)
    expect(readFileSync(join(shared, 'alice.png'))).toHaveLength(0)
    expect(lstatSync(join(shared, 'alice.png')).uid).toBe(uid)
    expect(existsSync(victim)).toBe(false)
    expect((await store.run(['user:list', '--json'])).json.users).toEqual([])
    // A directory of the attacker's, however private, is refused too.
    const theirs = join(shared, 'theirs')
    mkdirSync(theirs, {mode: 0o700})
    chownSync(theirs, uid, gid)
    expect(expectJsonError(await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--qr-dir', theirs, '--json']), 2)).toMatch(/belongs to uid/)
  })

  it('refuses a private directory inside one another user owns or could swap (exit 2), enrolling nobody', async () => {
    const {uid, gid} = mallory()
    const store = newStore()
    await enable(store)
    const parent = scratchDir()
    const dir = join(parent, 'qr')
    mkdirSync(dir, {mode: 0o700})
    chownSync(parent, uid, gid)
    const r = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--qr-dir', dir, '--json'])
    expect(expectJsonError(r, 2)).toMatch(new RegExp(`is inside "?${parent}"?, which belongs to uid ${uid}`))
    chownSync(parent, 0, 0)
    chmodSync(parent, 0o777)
    expect(expectJsonError(await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--qr-dir', dir, '--json']), 2)).toMatch(/without the sticky bit/)
    expect((await store.run(['user:list', '--json'])).json.users).toEqual([])
    expect(existsSync(join(dir, 'alice.png'))).toBe(false)
  })

  it('in a private directory, replaces old entries and links by new 0600 files instead of writing through them', async () => {
    const store = newStore()
    await enable(store)
    const dir = join(scratchDir(), 'qr')
    mkdirSync(dir, {mode: 0o700})
    const elsewhere = join(scratchDir(), 'elsewhere')
    writeFileSync(elsewhere, 'keep me', {mode: 0o644})
    writeFileSync(join(dir, 'bob.png'), 'old', {mode: 0o644})
    symlinkSync(elsewhere, join(dir, 'bob.svg'))
    const r = await store.run(['user:secret:renew', 'bob', '--qr', 'none', '--qr-dir', dir, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(elsewhere, 'utf8')).toBe('keep me')
    for (const name of ['bob.png', 'bob.svg']) {
      expect(lstatSync(join(dir, name)).isFile()).toBe(true)
      expect(mode(join(dir, name))).toBe(0o600)
    }
    expect(readFileSync(join(dir, 'bob.svg'), 'utf8')).toMatch(/<svg/)
  })
})

describe('the store directory is trusted only when nobody else can write it', () => {
  it('refuses a store directory writable by group or others (exit 3, saying chmod)', async () => {
    const store = newStore()
    await enable(store)
    chmodSync(dirname(store.path), 0o777)
    for (const args of [
      ['twofactor:enable', '--json'],
      ['user:list', '--json'],
      ['login:check', 'alice', '--json'],
    ])
      expect(expectJsonError(await store.run(args), 3)).toMatch(/chmod go-w/)
  })

  it('refuses a store directory that belongs to another user (exit 3, saying chown)', async () => {
    const {uid, gid} = mallory()
    const store = newStore()
    mkdirSync(dirname(store.path), {mode: 0o700})
    chownSync(dirname(store.path), uid, gid)
    expect(expectJsonError(await store.run(['twofactor:enable', '--json']), 3)).toMatch(/chown/)
    expect(existsSync(store.path)).toBe(false)
  })

  it('refuses a store inside a directory another user could swap (exit 3), and accepts one under a sticky directory such as /tmp', async () => {
    const {uid, gid} = mallory()
    const store = newStore()
    await enable(store)
    const before = readFileSync(store.path)
    const parent = store.dir // the store is <parent>/state/store.json; state/ stays 0700 and root's
    const args = ['twofactor:enable', '--window', '2', '--json']
    chmodSync(parent, 0o777) // others could rename state/ away and put theirs in its place
    expect(expectJsonError(await store.run(args), 3)).toMatch(new RegExp(`is inside ${parent}, which is writable by group or others .*chmod go-w ${parent}`))
    expect(expectJsonError(await store.run(['login:check', 'alice', '--json']), 3)).toMatch(/is inside/)
    chmodSync(parent, 0o700)
    chownSync(parent, uid, gid)
    expect(expectJsonError(await store.run(args), 3)).toMatch(new RegExp(`is inside ${parent}, which belongs to uid ${uid}.*chown`))
    expect(readFileSync(store.path)).toEqual(before)
    chownSync(parent, 0, 0)
    chmodSync(parent, 0o1777) // sticky: others cannot rename what is not theirs
    expect((await store.run(args)).code).toBe(0)
  })

  it('never creates or truncates a file through a link planted in place of the lock or the journal', async () => {
    const store = newStore()
    await enable(store)
    await renew(store, 'alice')
    const target = join(scratchDir(), 'created-by-root')
    const lock = `${store.path}.lock`
    rmSync(lock, {force: true})
    symlinkSync(target, lock)
    const r = await store.run(['twofactor:enable', '--window', '2', '--json'])
    expect(r.code).toBe(3)
    expect(hasStack(r.stderr)).toBe(false)
    expect(existsSync(target)).toBe(false)
    rmSync(lock)
    writeFileSync(target, 'precious')
    rmSync(`${store.path}.journal`)
    symlinkSync(target, `${store.path}.journal`)
    expectJsonError(await check(store, 'alice', {code: '000000'}), 3)
    expect(readFileSync(target, 'utf8')).toBe('precious')
  })

  it('does not use prompt markers in a runtime directory another user made', async () => {
    const {uid, gid} = mallory()
    const runtime = scratchDir()
    const theirs = join(runtime, 'tfactl')
    mkdirSync(theirs, {mode: 0o700})
    chownSync(theirs, uid, gid)
    const {markPrompted} = await import('../../src/store/session.js')
    const saved = process.env.XDG_RUNTIME_DIR
    process.env.XDG_RUNTIME_DIR = runtime
    try {
      expect(markPrompted('alice', 'sid-1')).toBe(true)
      expect(markPrompted('alice', 'sid-1')).toBe(true) // nothing recorded where the attacker can plant
    } finally {
      process.env.XDG_RUNTIME_DIR = saved
    }
    expect(execFileSync('ls', ['-A', theirs], {encoding: 'utf8'})).toBe('')
  })
})

describe('--oath-file only takes over an empty file or a pam_oath users file', () => {
  async function sshStore(): Promise<TempStore> {
    const store = newStore()
    await enable(store, '--ssh')
    await renew(store, 'alice')
    return store
  }

  it("refuses a file that is not a users file (a PAM config) and the store's own files (exit 2), changing nothing", async () => {
    const store = await sshStore()
    const pam = join(scratchDir(), 'sshd')
    writeFileSync(pam, '@include common-auth\nauth required pam_unix.so\n', {mode: 0o644})
    expect(expectJsonError(await store.run(['twofactor:enable', '--oath-file', pam, '--json']), 2)).toMatch(/not a pam_oath users file/)
    expect(readFileSync(pam, 'utf8')).toBe('@include common-auth\nauth required pam_unix.so\n')
    // (the audit log is left out of the comparison: each refusal is recorded in it)
    for (const own of [`${store.path}.key`, `${store.path}.bak`, `${store.path}.journal`, `${store.path}.lock`, join(dirname(store.path), 'tfactl.key')]) {
      const before = existsSync(own) ? readFileSync(own) : undefined
      expect(expectJsonError(await store.run(['twofactor:enable', '--oath-file', own, '--json']), 2), own).toMatch(
        /store's own files|not a pam_oath users file/,
      )
      expect(existsSync(own) ? readFileSync(own) : undefined, own).toEqual(before)
    }
    expect((await store.run(['twofactor:status', '--json'])).json.oathFile ?? null).toBeNull()
  })

  it('refuses a path with "#" (PAM reads the rest as a comment) or in a directory others can write, with exit 2', async () => {
    const store = await sshStore()
    const shared = scratchDir()
    chmodSync(shared, 0o1777)
    expect(expectJsonError(await store.run(['twofactor:enable', '--oath-file', join(shared, 'users.oath'), '--json']), 2)).toMatch(/another user/)
    expect(existsSync(join(shared, 'users.oath'))).toBe(false)
    // A private directory inside one others can write (no sticky bit): they could swap it.
    const open = scratchDir()
    mkdirSync(join(open, 'pam'), {mode: 0o700})
    chmodSync(open, 0o777)
    expect(expectJsonError(await store.run(['twofactor:enable', '--oath-file', join(open, 'pam', 'users.oath'), '--json']), 2)).toMatch(
      new RegExp(`is inside ${open}, which is writable by group or others .*another user`),
    )
    expect(existsSync(join(open, 'pam', 'users.oath'))).toBe(false)
    expect(expectJsonError(await store.run(['twofactor:enable', '--oath-file', `${scratchDir()}/users#1.oath`, '--json']), 2)).toMatch(/#/)
  })

  it('takes over an empty file, and a later move removes the old file (pam_oath then fails closed) and warns about PAM files naming it', async () => {
    const store = await sshStore()
    const dir = scratchDir()
    const first = join(dir, 'first.oath')
    writeFileSync(first, '', {mode: 0o600})
    expect((await store.run(['twofactor:enable', '--oath-file', first, '--json'])).code).toBe(0)
    expect(readFileSync(first, 'utf8')).toMatch(/^HOTP\/T30\/6\talice\t-\t[0-9a-f]+/m)
    const second = join(dir, 'second.oath')
    // sshd's PAM file still names the first path: tmpfs over /etc/pam.d in a mount namespace.
    const script = `mount -t tmpfs tmpfs /etc/pam.d && echo 'auth [success=ok user_unknown=ignore default=die] pam_oath.so usersfile=${first} window=1' > /etc/pam.d/sshd && exec "$0" "$@"`
    const out = execFileSync(
      'unshare',
      ['-m', 'sh', '-c', script, process.execPath, join(ROOT, 'bin', 'run.js'), 'twofactor:enable', '--oath-file', second, '--store', store.path, '--json'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {...process.env, NODE_ENV: ''},
      },
    )
    expect(JSON.parse(out).oathFile).toBe(second)
    expect(existsSync(first)).toBe(false)
    expect(readFileSync(second, 'utf8')).toMatch(/\talice\t/)
    const again = await store.run(['twofactor:enable', '--oath-file', first, '--json'])
    expect(again.code, again.stderr).toBe(0)
    expect(existsSync(second)).toBe(false)
  })

  it('warns when a PAM file still names the old users file', async () => {
    const store = await sshStore()
    const dir = scratchDir()
    const first = join(dir, 'a.oath')
    expect((await store.run(['twofactor:enable', '--oath-file', first, '--json'])).code).toBe(0)
    const script = `mount -t tmpfs tmpfs /etc/pam.d && echo 'auth [success=ok user_unknown=ignore default=die] pam_oath.so usersfile=${first} window=1' > /etc/pam.d/sshd && exec "$0" "$@" 2>&1`
    const out = execFileSync(
      'unshare',
      ['-m', 'sh', '-c', script, process.execPath, join(ROOT, 'bin', 'run.js'), 'twofactor:enable', '--oath-file', join(dir, 'b.oath'), '--store', store.path],
      {encoding: 'utf8'},
    )
    expect(out).toMatch(/\/etc\/pam\.d\/sshd still names the old users file/)
  })
})

describe('stores in one directory share no key and no audit log', () => {
  it("rotating one store's key leaves another store of the same directory readable", async () => {
    const dir = join(scratchDir(), 'state')
    const one = join(dir, 'one.json')
    const two = join(dir, 'two.json')
    const cli = (path: string, args: string[]) => tfactl([...args, '--store', path])
    for (const p of [one, two]) {
      expect((await cli(p, ['twofactor:enable', '--json'])).code).toBe(0)
      expect((await cli(p, ['user:secret:renew', 'alice', '--qr', 'none', '--json'])).code).toBe(0)
    }
    const before = (await cli(two, ['user:secret:show', 'alice', '--qr', 'none', '--json'])).json.secret
    expect((await cli(one, ['store:rotate-key', '--json'])).code).toBe(0)
    const after = await cli(two, ['user:secret:show', 'alice', '--qr', 'none', '--json'])
    expect(after.code, after.stderr).toBe(0)
    expect(after.json.secret).toBe(before)
    expect(existsSync(`${one}.audit.log`) && existsSync(`${two}.audit.log`)).toBe(true)
    expect(readFileSync(`${two}.audit.log`, 'utf8')).not.toMatch(/rotate-key/)
  })

  it('migrates a store sealed with the shared tfactl.key: read as before, sealed under its own key at the next write', async () => {
    const store = newStore()
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const dir = dirname(store.path)
    renameSync(`${store.path}.key`, join(dir, 'tfactl.key')) // the layout before side files were named after the store
    writeFileSync(
      join(dir, 'audit.log'),
      '{"time":"2026-01-01T00:00:00.000Z","actor":{"uid":0,"sudoUser":null},"command":"old","user":"alice","outcome":"ok","reason":null}\n',
      {mode: 0o600},
    )
    const legacy = readFileSync(join(dir, 'tfactl.key'))
    const shown = await store.run(['user:secret:show', 'alice', '--qr', 'none', '--json'])
    expect(shown.json?.secret, shown.stderr).toBe(secret)
    expectDecision(await check(store, 'alice', {code: await oathtool(secret)}), true, 'code_accepted')
    expect((await store.run(['twofactor:enable', '--window', '2', '--json'])).code).toBe(0) // a full write
    expect(readFileSync(`${store.path}.key`)).toHaveLength(32)
    expect(readFileSync(join(dir, 'tfactl.key')).equals(legacy)).toBe(true) // shared: never changed
    rmSync(join(dir, 'tfactl.key'))
    expect((await store.run(['user:secret:show', 'alice', '--qr', 'none', '--json'])).json.secret).toBe(secret)
    expect((await store.run(['audit', '--json'])).json.events.map((e: any) => e.command)).toContain('old')
  })
})

describe('--code - reads the code from stdin (never on the command line)', () => {
  it('login:check takes the code from stdin, on the fast path and in the oclif command', async () => {
    const store = newStore()
    await enable(store)
    const {secret} = await renew(store, 'alice')
    expectDecision(await store.run(['login:check', 'alice', '--code', '-', '--json'], {input: `${await oathtool(secret)}\n`}), true, 'code_accepted')
    const r = await viaOclif(['login:check', 'bob', '--code', '-', '--json', '--store', store.path], '123456\n')
    expectDecision(r, true, 'no_secret', true)
    await renew(store, 'bob')
    const bob = await viaOclif(['login:check', 'bob', '--code', '-', '--json', '--store', store.path], '000000\n')
    expectDecision(bob, false, 'code_invalid')
    expect(expectJsonError(await store.run(['login:check', 'alice', '--code', '-', '--json'], {input: ''}), 2)).toMatch(/stdin/)
  })

  it('self-service proofs (renew, unset, recovery codes) and confirm accept --code -', async () => {
    const store = newStore()
    await enable(store)
    const {secret} = await renew(store, 'alice')
    const proof = async () => ({...sudo('alice'), input: `${await oathtool(secret)}\n`})
    const gen = await store.run(['user:recovery:generate', '--code', '-', '--json'], await proof())
    expect(gen.code, gen.stderr).toBe(0)
    const pending = await store.run(['user:secret:renew', 'alice', '--pending', '--qr', 'none', '--code', '-', '--json'], {
      input: `${gen.json.codes[0]}\n`,
      ...sudo('alice'),
    })
    expect(pending.code, pending.stderr).toBe(0)
    const confirmed = await store.run(['user:secret:confirm', 'alice', '--code', '-', '--json'], {input: `${await oathtool(pending.json.users[0].secret)}\n`})
    expect(confirmed.code, confirmed.stderr).toBe(0)
    // (activating a new secret voids recovery codes: bob's prove the unset)
    await renew(store, 'bob')
    const bobCodes = (await store.run(['user:recovery:generate', 'bob', '--json'])).json.codes
    const unset = await store.run(['user:secret:unset', '--yes', '--code', '-', '--json'], {input: `${bobCodes[0]}\n`, ...sudo('bob')})
    expect(unset.code, unset.stderr).toBe(0)
    expect(unset.json.changed).toBe(true)
  })

  it('login:check has one flag spec that both parsers use', async () => {
    const {LOGIN_CHECK_FLAGS} = await import('../../src/login/flags.js')
    const {parseLoginCheck} = await import('../../src/login/fast.js')
    const {default: Check} = await import('../../src/commands/login/check.js')
    for (const [name, spec] of Object.entries(LOGIN_CHECK_FLAGS)) {
      const flag = (Check.flags as any)[name]
      expect(flag.description).toBe(spec.description)
      if ('options' in spec) {
        expect(flag.options).toEqual(spec.options)
        expect(flag.default).toBe(spec.default)
        const ssh = name === 'service' ? [] : ['--service', 'ssh'] // --method key only exists for ssh
        for (const value of spec.options) expect((parseLoginCheck(['alice', ...ssh, `--${name}`, value]) as any)?.[name], `${name} ${value}`).toBe(value)
        expect(parseLoginCheck(['alice', `--${name}`, 'bogus'])).toBeUndefined()
        expect((parseLoginCheck(['alice']) as any)[name]).toBe(spec.default)
      }
    }
  })
})

describe('the audit trail: whole lines, every user, safe to print', () => {
  it('records every user a bulk command acted on (renew, import --from users.oath)', async () => {
    const store = newStore()
    await enable(store)
    expect((await store.run(['user:secret:renew', 'u1', 'u2', 'u3', '--qr', 'none', '--json'])).code).toBe(0)
    const file = join(scratchDir(), 'users.oath')
    writeFileSync(file, 'HOTP/T30\tv1\t-\t3132333435363738393031323334353637383930\nHOTP/T30\tv2\t-\t3132333435363738393031323334353637383931\n')
    expect((await store.run(['user:secret:import', '--from', 'users.oath', file, '--json'])).code).toBe(0)
    const events = (await store.run(['audit', '--json'])).json.events
    expect(events.filter((e: any) => e.command === 'user:secret:renew').map((e: any) => e.user)).toEqual(['u1', 'u2', 'u3'])
    expect(events.filter((e: any) => e.command === 'user:secret:import').map((e: any) => e.user)).toEqual(['v1', 'v2'])
  })

  it('ends a torn tail before appending, so the next event is not swallowed', async () => {
    const store = newStore()
    await enable(store)
    const before = (await store.run(['audit', '--json'])).json.events.length
    writeFileSync(auditFile(store.path), '{"time":"2026-01-01T00:00:00.000Z","actor":{"uid":0', {flag: 'a'})
    expect((await store.run(['user:secret:renew', 'carol', '--qr', 'none', '--json'])).code).toBe(0)
    const events = (await store.run(['audit', '--json'])).json.events
    expect(events).toHaveLength(before + 1)
    expect(events.at(-1)).toMatchObject({command: 'user:secret:renew', user: 'carol', outcome: 'ok'})
  })

  it('escapes control characters in human output; JSON keeps them exactly', async () => {
    const store = newStore()
    const evil = 'root\u001b[2J\u001b]0;pwned\u0007'
    expect((await store.run(['twofactor:enable', '--json'], {env: {SUDO_USER: evil}})).code).toBe(0)
    const text = await store.run(['audit'])
    expect(text.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/)
    expect(text.stdout).toContain('\\x1b[2J')
    expect((await store.run(['audit', '--json'])).json.events[0].actor.sudoUser).toBe(evil)
  })

  it('on a full disk writes whole lines or nothing, lets logins go on, and doctor says events were lost', async () => {
    const dir = scratchDir()
    const mnt = join(dir, 'mnt')
    mkdirSync(mnt, {mode: 0o700})
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt])
    try {
      const path = join(mnt, 'store.json')
      const cli = (args: string[]) => tfactl([...args, '--store', path])
      expect((await cli(['twofactor:enable', '--ssh', '--json'])).code).toBe(0)
      // Bring the log to 40 bytes short of a page, then fill the disk: the next line gets only part of a page.
      const audit = auditFile(path)
      const size = statSync(audit).size
      const pad = 4096 - 40 - (size % 4096) + (size % 4096 > 4096 - 80 ? 4096 : 0)
      writeFileSync(audit, `${JSON.stringify({pad: 'x'.repeat(Math.max(0, pad - 11))})}\n`, {flag: 'a'})
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${join(mnt, 'fill')}`, 'bs=4096'], {stdio: 'ignore'})
      } catch {
        // ENOSPC: the disk is full, as wanted
      }
      const before = readFileSync(audit)
      const login = await cli(['login:check', 'alice', '--service', 'ssh', '--method', 'key', '--json'])
      expectDecision(login, true, 'key_auth')
      expect(login.stderr).toMatch(/could not write the audit log/)
      expect(readFileSync(audit).equals(before)).toBe(true) // nothing of the half line stayed
      const doctor = await cli(['doctor', '--json', '--pam-file', '/nonexistent', '--sshd-config', '/nonexistent'])
      expect(doctor.json.checks.find((c: any) => c.check === 'audit log')?.message).toMatch(/events were lost/)
      rmSync(join(mnt, 'fill'))
      expect((await cli(['login:check', 'alice', '--service', 'ssh', '--method', 'key', '--json'])).code).toBe(0)
      const lines = readFileSync(audit, 'utf8').trimEnd().split('\n')
      for (const l of lines) expect(() => JSON.parse(l), l).not.toThrow()
      expect(JSON.parse(lines.at(-1)!)).toMatchObject({command: 'login:check', user: 'alice', reason: 'key_auth'})
    } finally {
      execFileSync('umount', [mnt])
    }
  })
})

describe('plain answers every caller can rely on: one-line refusals, no secret in errors, what was changed', () => {
  it("a non-root user on root's store gets exit 4 and one plain line from every command", async () => {
    mallory()
    const store = newStore()
    await enable(store)
    await renew(store, 'alice')
    // Root's store in a directory others may enter (like /var/lib/tfactl 0755) and one they may not.
    for (const dirMode of [0o755, 0o700]) {
      chmodSync(dirname(store.path), dirMode)
      chmodSync(dirname(dirname(store.path)), 0o755)
      for (const args of [
        ['login:check', 'alice', '--code', '123456'],
        ['twofactor:enable', '--window', '2'],
        ['user:list'],
        ['user:secret:renew', 'bob', '--qr', 'none'],
      ]) {
        const r = await tfactlAsMallory([...args, '--store', store.path])
        expect(r.code, `${args[0]} (dir ${dirMode.toString(8)}): ${r.stderr}`).toBe(4)
        expect(r.stderr.trim().split('\n')).toHaveLength(1)
        expect(r.stderr).not.toMatch(/EACCES|EPERM|\s{4}at /)
      }
    }
    chmodSync(dirname(dirname(store.path)), 0o700)
  })

  it('an import error never echoes a field that may be a secret', async () => {
    const store = newStore()
    const hex = '3132333435363738393031323334353637383930aabbccddeeff'
    const file = join(scratchDir(), 'users.oath')
    for (const line of [`HOTP/T30\t${hex}\t-\t${hex}`, `${hex}\talice\t-\t${hex}`]) {
      writeFileSync(file, `${line}\n`)
      const message = expectJsonError(await store.run(['user:secret:import', '--from', 'users.oath', file, '--json']), 2)
      expect(message).toMatch(/users\.oath:1:/)
      expect(message).not.toContain(hex.slice(0, 20))
    }
  })

  it('store:rotate-key reports the users re-sealed', async () => {
    const store = newStore()
    await enable(store)
    await renew(store, 'alice')
    await renew(store, 'bob')
    const r = await store.run(['store:rotate-key', '--json'])
    expect(r.json).toEqual({rotated: true, users: ['alice', 'bob'], changed: true})
    expect((await store.run(['store:rotate-key'])).stdout).toMatch(/2 user\(s\) re-sealed: alice, bob/)
  })
})

describe('self-service: a wrong proof is a counted failure and nothing else is written', () => {
  it('renew of several users under sudo with a wrong --code changes nobody', async () => {
    const store = newStore()
    await enable(store, '--max-failures', '1')
    await renew(store, 'alice')
    const before = (await store.run(['user:list', '--json'])).json.users
    expectJsonError(await store.run(['user:secret:renew', 'bob', 'alice', '--qr', 'none', '--code', '000000', '--json'], sudo('alice')), 4)
    const after = (await store.run(['user:list', '--json'])).json.users
    expect(after.map((u: any) => u.user)).toEqual(before.map((u: any) => u.user)) // bob was not enrolled
    expect(after.find((u: any) => u.user === 'alice').lockedOut).toBe(true) // the failure counted
  })

  it('import --from users.oath under sudo with a wrong --code imports nobody', async () => {
    const store = newStore()
    await enable(store)
    await renew(store, 'alice')
    const file = join(scratchDir(), 'users.oath')
    writeFileSync(file, 'HOTP/T30\tbob\t-\t3132333435363738393031323334353637383930\nHOTP/T30\talice\t-\t3132333435363738393031323334353637383931\n')
    expectJsonError(await store.run(['user:secret:import', '--from', 'users.oath', file, '--code', '000000', '--json'], sudo('alice')), 4)
    expect((await store.run(['user:list', '--json'])).json.users.map((u: any) => u.user)).toEqual(['alice'])
  })
})

describe('doctor and help describe pam_oath and the settings as they are', () => {
  it("doctor takes a pam_oath line without window= as pam_oath's default (5)", async () => {
    const store = newStore()
    await enable(store, '--ssh', '--window', '5')
    const pam = join(scratchDir(), 'sshd')
    writeFileSync(pam, '@include common-auth\nauth [success=ok user_unknown=ignore default=die] pam_oath.so usersfile=/etc/users.oath\n')
    const r = await store.run(['doctor', '--json', '--pam-file', pam, '--sshd-config', '/nonexistent'])
    const line = r.json.checks.find((c: any) => c.check === 'sshd PAM')
    expect(line.message).not.toMatch(/window/)
  })

  it('twofactor:enable --window help does not claim 30 s steps (steps are per user)', async () => {
    const r = await newStore().run(['twofactor:enable', '--help'])
    expect(r.stdout).not.toMatch(/30 s steps/)
  })
})
