// The Debian package as an admin meets it (as root, as in CI): `npm run package`'s build, lintian,
// dpkg -i, the standalone /usr/bin/tfactl with no node anywhere on PATH (a fake `node` there
// records any attempt to run one), an enrolment and oathtool's code, the RADIUS responder started
// with the installed unit's own ExecStart line answering radclient, shell completion from the
// installed file, then dpkg -r and dpkg -P keeping the 2FA state, which a reinstall uses again.
//
// It installs /usr/bin/tfactl for its duration; its stores are private (temporary, or uniquely
// named files in /var/lib/tfactl and /etc/tfactl for the remove/purge check), and it removes
// /etc/tfactl and /var/lib/tfactl only when it created them.
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {jsonOf, oathtool, ROOT} from '../helpers/cli.js'

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0
const missing =
  process.getuid?.() !== 0
    ? 'not root'
    : !has('dpkg-deb') || !has('lintian') || !has('radclient') || !has('oathtool')
      ? 'needs dpkg-deb, lintian, radclient (freeradius-utils) and oathtool'
      : spawnSync('dpkg-query', ['-W', 'tfactl']).status === 0 || existsSync('/usr/bin/tfactl')
        ? 'a tfactl is already installed on this host: not replacing it'
        : null
if (missing) console.warn(`[package] skipped: ${missing}`)

const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version
const DEB = join(ROOT, 'build', `tfactl_${VERSION}_amd64.deb`)
const TFACTL = '/usr/bin/tfactl'
const UNIT = '/usr/lib/systemd/system/tfactl-radius.service'
const ADDON = '/usr/lib/tfactl/fs-native-extensions.node'

const tag = randomBytes(6).toString('hex')
// Made by beforeAll (mkdir: an existing one is an error), so that a skipped run leaves none behind.
const work = join(tmpdir(), `tfactl-package-test-${tag}`)
// A copy of the installed executable and its addon under a prefix of its own (<prefix>/bin/tfactl
// loads <prefix>/lib/tfactl/<addon>), traversable by `nobody` for the run as another user.
const prefix = join(tmpdir(), `tfactl-package-prefix-${tag}`)
const noNodeBin = join(work, 'bin') // PATH: only a fake node, which leaves a mark when run
const nodeRan = join(work, 'node-ran')
// State the package must keep over remove and purge: a store (with its key, audit log) in the
// state directory, and a key in the configuration directory.
const keptStore = `/var/lib/tfactl/package-test-${tag}.json`
const keptKey = `/etc/tfactl/package-test-${tag}.key`
const made = {etc: false, varLib: false}
let radius: ReturnType<typeof spawn> | undefined

interface Run {
  code: number
  stdout: string
  stderr: string
}
/** The installed executable, with no node on PATH and nothing of this process's environment but what is given. */
function installed(args: string[], env: Record<string, string> = {}, input = ''): Run {
  const r = spawnSync(TFACTL, args, {env: {PATH: noNodeBin, HOME: work, NO_COLOR: '1', ...env}, input, encoding: 'utf8', timeout: 60_000})
  return {code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr}
}
const dpkg = (...args: string[]) => execFileSync('dpkg', args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
const digest = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex')
const mode = (path: string) => statSync(path).mode & 0o7777

/** Enrols USER in STORE with the installed executable; the secret. */
function enrol(user: string, store: string): string {
  const r = installed(['user:secret:renew', user, '--no-verify', '--qr', 'none', '--json', '--store', store])
  expect(r.code, r.stderr).toBe(0)
  return jsonOf(r.stdout).users[0].secret
}

/** The service's command line as systemd builds it: ExecStart with $VARS from its EnvironmentFile, split on whitespace. */
function execStart(envFile: string): string[] {
  const unit = readFileSync(UNIT, 'utf8')
  const line = /^ExecStart=(.*)$/m.exec(unit)![1]
  const vars: Record<string, string> = {}
  for (const l of readFileSync(envFile, 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(?:"([^"]*)"|(\S*))\s*$/.exec(l)
    if (m) vars[m[1]] = m[2] ?? m[3]
  }
  return line.split(/\s+/).flatMap((word) => (/^\$[A-Z_][A-Z0-9_]*$/.test(word) ? (vars[word.slice(1)] ?? '').split(/\s+/).filter(Boolean) : [word]))
}

function radclient(port: number, secret: string, attrs: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('radclient', ['-x', '-r', '1', '-t', '3', `127.0.0.1:${port}`, 'auth', secret])
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    child.stdin.end(`${attrs}\n`)
    child.on('close', () => resolve(out))
  })
}

/**
 * A long command's status and its stdout and stderr together. Not spawnSync: a vitest worker
 * blocked for a minute misses vitest's own calls (an "onTaskUpdate" timeout fails the run).
 */
function runLong(cmd: string, args: string[]): Promise<{status: number | null; output: string}> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {cwd: ROOT})
    let output = ''
    child.stdout.on('data', (d) => (output += d))
    child.stderr.on('data', (d) => (output += d))
    child.on('close', (status) => resolve({status, output}))
  })
}

/** The build `npm run package` does after `npm run build` (the test run has built dist/ already), for one architecture; its output. */
async function buildPackage(arch: 'amd64' | 'arm64'): Promise<string> {
  const t0 = Date.now()
  const built = await runLong(process.execPath, [join(ROOT, 'scripts', 'package.mjs'), '--arch', arch])
  // (the output only on failure: postject's ELF library warns about Node's many notes)
  if (built.status !== 0) throw new Error(`npm run package failed (exit ${built.status}):\n${built.output}`)
  console.log(`[package] built ${arch} in ${((Date.now() - t0) / 1000).toFixed(0)} s`)
  return built.output
}

function cleanUp() {
  radius?.kill('SIGKILL')
  spawnSync('dpkg', ['-P', 'tfactl'], {stdio: 'ignore'})
  for (const f of [keptStore, `${keptStore}.key`, `${keptStore}.bak`, `${keptStore}.lock`, `${keptStore}.journal`, `${keptStore}.audit.log`, keptKey])
    rmSync(f, {force: true})
  if (made.varLib) rmSync('/var/lib/tfactl', {recursive: true, force: true})
  if (made.etc) rmSync('/etc/tfactl', {recursive: true, force: true})
  rmSync(work, {recursive: true, force: true})
  rmSync(prefix, {recursive: true, force: true})
}

describe.skipIf(missing !== null)('the Debian package', {timeout: 900_000}, () => {
  beforeAll(async () => {
    made.etc = !existsSync('/etc/tfactl')
    made.varLib = !existsSync('/var/lib/tfactl')
    for (const dir of [work, prefix]) mkdirSync(dir, {mode: 0o700})
    mkdirSync(noNodeBin)
    writeFileSync(join(noNodeBin, 'node'), `#!/bin/sh\ntouch ${nodeRan}\nexit 1\n`, {mode: 0o755})
    await buildPackage('amd64')
  }, 900_000)
  afterAll(cleanUp)

  it('passes lintian with no error (overrides are in packaging/lintian-overrides, each with its reason)', async () => {
    const r = await runLong('lintian', ['--fail-on', 'error', DEB])
    expect(r.output.split('\n').filter((l) => /^E: /.test(l))).toEqual([])
    expect(r.status, r.output).toBe(0)
  }, 300_000)

  it('installs the executable, the unit, root-only directories, the sudoers example (not enabled), man pages, completions and the copyright file', () => {
    dpkg('-i', DEB)
    expect(mode(TFACTL)).toBe(0o755)
    for (const dir of ['/etc/tfactl', '/var/lib/tfactl']) {
      expect(statSync(dir).uid).toBe(0)
      expect(mode(dir), dir).toBe(0o700)
    }
    expect(readFileSync('/etc/tfactl/radius.env', 'utf8')).toMatch(/^TFACTL_RADIUS_ARGS=/m)
    expect(readFileSync('/usr/share/doc/tfactl/examples/sudoers', 'utf8')).toMatch(/^Cmnd_Alias TFACTL_SELF = \/usr\/bin\/tfactl user\\:secret\\:renew/m)
    expect(existsSync('/etc/sudoers.d/tfactl'), 'the package must not enable sudo rules').toBe(false)
    const pages = readdirSync(join(ROOT, 'man')).filter((f) => f.endsWith('.1'))
    expect(pages).toContain('tfactl.1')
    for (const page of pages) expect(existsSync(`/usr/share/man/man1/${page}.gz`), page).toBe(true)
    expect(readFileSync('/usr/share/zsh/vendor-completions/_tfactl', 'utf8')).toMatch(/^#compdef tfactl/)
    const copyright = readFileSync('/usr/share/doc/tfactl/copyright', 'utf8')
    for (const name of ['@oclif/core', 'pg', 'qrcode', '@inquirer/prompts', 'lowdb', 'fs-native-extensions', 'Node.js']) expect(copyright).toContain(name)
    // The lock addon beside it: root's, not writable by others.
    const addon = statSync(ADDON)
    expect([addon.uid, addon.mode & 0o022]).toEqual([0, 0])
  })

  it.skipIf(!has('systemd-analyze'))('installs a unit systemd-analyze verifies with no warning and rates "OK" for exposure', () => {
    // Offline: no systemd is started or asked; --man checks the Documentation= page when man is here.
    const verify = spawnSync('systemd-analyze', ['verify', `--man=${has('man') ? 'yes' : 'no'}`, UNIT], {encoding: 'utf8'})
    expect(verify.stdout + verify.stderr).toBe('')
    expect(verify.status).toBe(0)
    const security = spawnSync('systemd-analyze', ['security', '--offline=true', UNIT], {encoding: 'utf8'})
    const level = /Overall exposure level for tfactl-radius\.service: ([\d.]+) (\S+)/.exec(security.stdout)
    expect(level, security.stdout + security.stderr).not.toBeNull()
    expect(level![2]).toBe('OK')
  })

  it("runs with no node on PATH: --version, an enrolment, and oathtool's code accepted", async () => {
    const version = installed(['--version'])
    expect(version.code, version.stderr).toBe(0)
    expect(version.stdout).toMatch(new RegExp(`^tfactl/${VERSION.replace(/\./g, '\\.')} linux-x64 node-v20\\.`))
    const store = join(work, 'store', 'store.json')
    expect(installed(['twofactor:enable', '--ssh', '--fail-delay', '0', '--store', store]).code).toBe(0)
    const secret = enrol('alice', store)
    const login = installed(['login:check', 'alice', '--code', await oathtool(secret), '--json', '--store', store])
    expect(login.code, login.stderr).toBe(0)
    expect(jsonOf(login.stdout)).toMatchObject({allowed: true, reason: 'code_accepted'})
    expect(installed(['login:check', 'alice', '--code', '000000', '--store', store]).code).toBe(1)
    expect(existsSync(nodeRan), 'the executable ran a node').toBe(false)
  })

  it("loads the lock addon only from a place of root's that nobody else can write: refuses any other, restores root's copy, tells others to reinstall", () => {
    const exe = join(prefix, 'bin', 'tfactl')
    const lib = join(prefix, 'lib', 'tfactl')
    const addon = join(lib, 'fs-native-extensions.node')
    mkdirSync(join(prefix, 'bin'))
    mkdirSync(lib, {recursive: true})
    chmodSync(prefix, 0o755)
    copyFileSync(TFACTL, exe)
    chmodSync(exe, 0o755)
    copyFileSync(ADDON, addon)
    const original = digest(addon)
    const nobody = Number(execFileSync('id', ['-u', 'nobody'], {encoding: 'utf8'}))
    // twofactor:enable on a new store takes the store's lock, so it loads the addon first.
    let stores = 0
    const enable = (as: 'root' | 'nobody' = 'root') => {
      const dir = join(prefix, `store-${stores++}`)
      mkdirSync(dir)
      if (as === 'nobody') chownSync(dir, nobody, nobody)
      const cmd = as === 'nobody' ? ['setpriv', `--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', exe] : [exe]
      const r = spawnSync(cmd[0], [...cmd.slice(1), 'twofactor:enable', '--store', join(dir, 'store.json')], {
        env: {PATH: `${noNodeBin}:/usr/bin:/bin`, HOME: dir, NO_COLOR: '1'},
        encoding: 'utf8',
      })
      return {code: r.status, stderr: r.stderr, stored: existsSync(join(dir, 'store.json'))}
    }
    const refused = (why: RegExp, as: 'root' | 'nobody' = 'root') => {
      const r = enable(as)
      expect(r.code, r.stderr).toBe(3)
      expect(r.stderr).toMatch(/^tfactl: cannot load the file-locking addon for linux-x64 \(fs-native-extensions\): /m)
      expect(r.stderr).toMatch(why)
      expect(r.stderr).not.toMatch(/\n\s+at /) // one line, no stack trace
      expect(r.stored, 'no store is written without the lock').toBe(false)
    }
    expect(enable()).toMatchObject({code: 0, stored: true})

    const badDir = new RegExp(`${lib} must be a directory of root's that group and others cannot write`)
    for (const unsafe of [0o1777, 0o775]) {
      chmodSync(lib, unsafe) // world-writable like /tmp, or group-writable
      refused(badDir)
    }
    chmodSync(lib, 0o755)
    chownSync(lib, nobody, 0)
    refused(badDir)
    chownSync(lib, 0, 0)

    const badFile = new RegExp(`${addon} must be a file of root's that group and others cannot write`)
    chmodSync(addon, 0o666)
    refused(badFile)
    chmodSync(addon, 0o644)
    chownSync(addon, nobody, 0)
    refused(badFile)
    chownSync(addon, 0, 0)
    // A link is not followed, even to the right bytes.
    renameSync(addon, `${addon}.real`)
    symlinkSync(`${addon}.real`, addon)
    refused(/ELOOP/)
    rmSync(addon)
    renameSync(`${addon}.real`, addon)

    // Root's own file with other bytes, or none: root gets the executable's copy written there.
    writeFileSync(addon, 'not the addon')
    expect(enable()).toMatchObject({code: 0, stored: true})
    expect(digest(addon)).toBe(original)
    // Anyone else is told to reinstall, and nothing is written.
    rmSync(addon)
    refused(/is missing or is not this executable's: reinstall the tfactl package/, 'nobody')
    expect(existsSync(addon)).toBe(false)
    expect(readdirSync(lib)).toEqual([])
    expect(enable()).toMatchObject({code: 0, stored: true})
    expect(digest(addon)).toBe(original)
    expect([statSync(addon).uid, mode(addon)]).toEqual([0, 0o644])
  })

  it("answers radclient with radius:serve started by the unit's own ExecStart line", async () => {
    const store = join(work, 'store', 'store.json')
    const secret = enrol('bob', store)
    const shared = randomBytes(12).toString('hex')
    const clients = join(work, 'radius-clients')
    writeFileSync(clients, `127.0.0.1 ${shared}\n`, {mode: 0o600})
    chmodSync(clients, 0o600)
    // The installed flags file, as an admin would edit it: another port and clients file.
    const installedArgs = readFileSync('/etc/tfactl/radius.env', 'utf8')
    expect(installedArgs).toContain('--clients /etc/tfactl/radius-clients')
    const envFile = join(work, 'radius.env')
    writeFileSync(envFile, installedArgs.replace('127.0.0.1:1812', '127.0.0.1:0').replace('/etc/tfactl/radius-clients', clients))
    const [exe, ...args] = execStart(envFile)
    expect(exe).toBe(TFACTL)
    expect(args.slice(0, 1)).toEqual(['radius:serve'])
    radius = spawn(exe, args, {env: {PATH: noNodeBin, TFACTL_STORE: store, NO_COLOR: '1'}, stdio: ['ignore', 'ignore', 'pipe']})
    let log = ''
    radius.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d))
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`radius:serve did not start:\n${log}`)), 30_000)
      radius!.stderr!.on('data', () => {
        const m = /answering on [^\s]+:(\d+)/.exec(log)
        if (m) {
          clearTimeout(timer)
          resolve(Number(m[1]))
        }
      })
      radius!.once('exit', (code) => reject(new Error(`radius:serve exited ${code}:\n${log}`)))
    })
    const accepted = await radclient(port, shared, `User-Name = "bob", User-Password = "${await oathtool(secret)}"`)
    expect(accepted, log).toMatch(/Received Access-Accept/)
    const refused = await radclient(port, shared, 'User-Name = "bob", User-Password = "000000"')
    expect(refused).toMatch(/Received Access-Reject/)
    const exited = new Promise((resolve) => radius!.once('exit', resolve))
    radius.kill('SIGTERM')
    expect(await exited).toBe(0)
    radius = undefined
    expect(existsSync(nodeRan), 'the executable ran a node').toBe(false)
  })

  it('completes commands and flags in bash from the installed completion file', () => {
    // COMP_WORDS as bash makes them: ':' is in COMP_WORDBREAKS, so it is a word of its own.
    const complete = (line: string) => {
      const words = line.split(' ').flatMap((w) => w.split(/(:)/).filter(Boolean))
      const script = `source /usr/share/bash-completion/bash_completion; source /usr/share/bash-completion/completions/tfactl
complete -p tfactl
COMP_LINE='${line}'; COMP_POINT=\${#COMP_LINE}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}
_tfactl_autocomplete; printf '%s\\n' "\${COMPREPLY[@]}"`
      return execFileSync('bash', ['--norc', '-c', script], {encoding: 'utf8'}).split('\n')
    }
    const commands = complete('tfactl user:secret:re')
    expect(commands).toContain('complete -o default -F _tfactl_autocomplete tfactl')
    expect(commands).toContain('renew') // bash shows the rest of user:secret:renew after the last ':'
    expect(complete('tfactl us')).toEqual(expect.arrayContaining(['user:bypass', 'user:list', 'user:secret:renew']))
    expect(complete('tfactl login:check --co')).toContain('--code')
  })

  it('keeps the store, its key and the audit log through dpkg -r and dpkg -P, and a reinstall uses them', async () => {
    expect(installed(['twofactor:enable', '--store', keptStore]).code).toBe(0)
    const secret = enrol('carol', keptStore)
    writeFileSync(keptKey, randomBytes(32), {mode: 0o600})
    const kept = [keptStore, `${keptStore}.key`, `${keptStore}.audit.log`, keptKey]
    const before = kept.map(digest)

    dpkg('-r', 'tfactl')
    expect(existsSync(TFACTL)).toBe(false)
    expect(kept.map(digest)).toEqual(before)
    dpkg('-P', 'tfactl')
    expect(existsSync('/etc/tfactl/radius.env'), 'purge removes the conffile').toBe(false)
    expect(kept.map(digest)).toEqual(before)
    expect(mode('/var/lib/tfactl')).toBe(0o700)
    expect(mode('/etc/tfactl')).toBe(0o700)

    dpkg('-i', DEB)
    const login = installed(['login:check', 'carol', '--code', await oathtool(secret), '--json', '--store', keptStore])
    expect(login.code, login.stderr).toBe(0)
    expect(jsonOf(login.stdout)).toMatchObject({allowed: true, reason: 'code_accepted'})
    expect(digest(`${keptStore}.key`)).toBe(before[1])
    // Twice in a row, the maintainer scripts change nothing either.
    dpkg('-i', DEB)
    expect(digest(`${keptStore}.key`)).toBe(before[1])
  })
})

// The arm64 package, built on this x64 machine, run under qemu-user (qemu-aarch64 with Debian's
// arm64 C and C++ libraries, no binfmt needed): an executable whose code caches were made by x64
// crashed there, so this runs its start-up, the lock addon and a login, not only --version.
const ARM_LIBS = '/usr/aarch64-linux-gnu'
const armMissing =
  missing ??
  (!has('qemu-aarch64') || !existsSync(join(ARM_LIBS, 'lib', 'ld-linux-aarch64.so.1')) || !existsSync(join(ARM_LIBS, 'lib', 'libstdc++.so.6'))
    ? 'needs qemu-user and libc6-arm64-cross, libstdc++6-arm64-cross, libgcc-s1-arm64-cross'
    : null)
if (armMissing && !missing) console.warn(`[package arm64] skipped: ${armMissing}`)

describe.skipIf(armMissing !== null)('the arm64 Debian package (under qemu-aarch64)', {timeout: 900_000}, () => {
  const root = join(tmpdir(), `tfactl-package-arm64-${tag}`)
  const fakeBin = join(root, 'fake-bin') // PATH: only a fake node, as above
  const armNodeRan = join(root, 'node-ran')
  let output = ''
  beforeAll(async () => {
    mkdirSync(fakeBin, {recursive: true, mode: 0o700})
    writeFileSync(join(fakeBin, 'node'), `#!/bin/sh\ntouch ${armNodeRan}\nexit 1\n`, {mode: 0o755})
    output = await buildPackage('arm64')
  }, 900_000)
  afterAll(() => rmSync(root, {recursive: true, force: true}))

  it("runs with no node on PATH: --version, an enrolment, the lock addon, and oathtool's code accepted", async (ctx) => {
    const deb = join(ROOT, 'build', `tfactl_${VERSION}_arm64.deb`)
    // Without the npm registry the build skips arm64 (and says so): nothing to run then.
    if (/arm64 skipped/.test(output)) ctx.skip()
    execFileSync('dpkg-deb', ['-x', deb, root]) // as root: /usr/lib/tfactl and its addon are root's
    // qemu by its full path: the executable's PATH has no qemu either
    const qemu = execFileSync('sh', ['-c', 'command -v qemu-aarch64'], {encoding: 'utf8'}).trim()
    const arm = (args: string[]) => {
      const r = spawnSync(qemu, ['-L', ARM_LIBS, join(root, 'usr', 'bin', 'tfactl'), ...args], {
        env: {PATH: fakeBin, HOME: root, NO_COLOR: '1'},
        encoding: 'utf8',
        timeout: 120_000,
      })
      return {code: r.status, stdout: r.stdout, stderr: r.stderr}
    }
    const version = arm(['--version'])
    expect(version.code, version.stderr).toBe(0)
    expect(version.stdout).toMatch(new RegExp(`^tfactl/${VERSION.replace(/\./g, '\\.')} linux-arm64 node-v20\\.`))
    const store = join(root, 'state', 'store.json')
    expect(arm(['twofactor:enable', '--fail-delay', '0', '--store', store]).code).toBe(0)
    const renewed = arm(['user:secret:renew', 'dave', '--no-verify', '--qr', 'none', '--json', '--store', store])
    expect(renewed.code, renewed.stderr).toBe(0)
    const login = arm(['login:check', 'dave', '--code', await oathtool(jsonOf(renewed.stdout).users[0].secret), '--json', '--store', store])
    expect(login.code, login.stderr).toBe(0)
    expect(jsonOf(login.stdout)).toMatchObject({allowed: true, reason: 'code_accepted'})
    expect(arm(['login:check', 'dave', '--code', '000000', '--store', store]).code).toBe(1)
    expect(existsSync(armNodeRan), 'the executable ran a node').toBe(false)
  })
})
