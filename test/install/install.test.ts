// Installs on a host without a compiler: a clean copy of the project (the files git knows, as
// they are in the working tree) is installed with `npm install`, packed with `npm pack`, and the
// tarball installed globally (`npm install -g --prefix DIR`), each time with a PATH that holds
// node, npm, git and sh only, so that no make, cc/g++ or python can be found. The installed
// tfactl then enrols a user and accepts the code oathtool computes. npm uses its usual cache
// (the registry is asked only for what the cache lacks).
import {execFileSync, spawn} from 'node:child_process'
import {copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ROOT} from '../helpers/cli.js'

const work = mkdtempSync(join(tmpdir(), 'tfactl-install-'))
const bin = join(work, 'bin') // the only directory on PATH
const project = join(work, 'clone')
const prefix = join(work, 'global')
const TOOLS = ['node', 'npm', 'git', 'sh']
const FORBIDDEN = ['make', 'gmake', 'cc', 'gcc', 'g++', 'c++', 'clang', 'clang++', 'python', 'python3', 'node-gyp']

const which = (tool: string): string => execFileSync('sh', ['-c', `command -v ${tool}`], {encoding: 'utf8'}).trim()

/** The environment of a host without a toolchain: PATH is `bin` (plus `extra`), npm quiet. */
function bareEnv(...extra: string[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: [...extra, bin].join(':'),
    NO_COLOR: '1',
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  }
  for (const k of Object.keys(env)) if (/^(npm_(lifecycle|package|node_execpath|execpath)|INIT_CWD|TFACTL_|NODE_ENV$|VITEST)/.test(k)) delete env[k]
  return env
}

/** Runs a command (asynchronously: the test worker must stay responsive during a long npm run). */
function run(cmd: string, args: string[], cwd: string, env = bareEnv(), timeoutMs = 300_000): Promise<{code: number | null; out: string; stdout: string}> {
  return new Promise((done) => {
    const child = spawn(cmd, args, {cwd, env, timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let out = ''
    child.stdout.on('data', (d) => {
      stdout += d
      out += d
    })
    child.stderr.on('data', (d) => (out += d))
    child.on('close', (code) => done({code, out, stdout}))
  })
}

function oathtool(secret: string): string {
  return execFileSync('oathtool', ['--totp', '-b', secret], {encoding: 'utf8'}).trim()
}

/** twofactor:enable, user:secret:renew, then login:check with oathtool's code: must be allowed. */
async function enrolAndLogIn(tfactl: string[], cwd: string, env: NodeJS.ProcessEnv) {
  const store = join(mkdtempSync(join(work, 'store-')), 'state', 'store.json')
  const cli = (...args: string[]) => run(tfactl[0], [...tfactl.slice(1), ...args, '--store', store], cwd, env, 60_000)
  const enabled = await cli('twofactor:enable', '--fail-delay', '0', '--json')
  expect(enabled.code, enabled.out).toBe(0)
  const renewed = await cli('user:secret:renew', 'alice', '--qr', 'none', '--json')
  expect(renewed.code, renewed.out).toBe(0)
  const {secret} = JSON.parse(renewed.stdout).users[0]
  // Away from a step boundary, so that oathtool's code is still current at the check.
  while (Date.now() % 30_000 > 25_000) await sleep(250)
  const wrong = await cli('login:check', 'alice', '--code', String((Number(oathtool(secret)) + 1) % 1_000_000).padStart(6, '0'))
  expect(wrong.code, wrong.out).toBe(1)
  const allowed = await cli('login:check', 'alice', '--code', oathtool(secret)) // the fast path: the lock addon
  expect(allowed.code, allowed.out).toBe(0)
  expect(allowed.stdout).toBe('alice: allowed (code_accepted)\n')
  const json = await cli('login:check', 'alice', '--code', oathtool(secret), '--json') // a replay, through the same path
  expect(JSON.parse(json.stdout)).toMatchObject({allowed: false, reason: 'code_replayed'})
}

beforeAll(() => {
  mkdirSync(bin)
  for (const tool of TOOLS) symlinkSync(realpathSync(which(tool)), join(bin, tool))
  // A clean copy: every file git tracks or would add, as it is in the working tree (so a test
  // run during development installs the code under test), nothing git ignores (node_modules, dist).
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {cwd: ROOT, encoding: 'utf8'}).split('\0').filter(Boolean)
  for (const file of files) {
    if (!existsSync(join(ROOT, file))) continue // deleted in the working tree
    mkdirSync(dirname(join(project, file)), {recursive: true})
    copyFileSync(join(ROOT, file), join(project, file))
  }
}, 60_000)

afterAll(() => rmSync(work, {recursive: true, force: true}))

describe('installing without a compiler', () => {
  it('has no make, C/C++ compiler or python on its PATH', async () => {
    for (const tool of FORBIDDEN) expect((await run('sh', ['-c', `command -v ${tool} || echo absent`], work)).stdout.trim(), tool).toBe('absent')
    for (const tool of TOOLS) expect((await run('sh', ['-c', `command -v ${tool}`], work)).code, tool).toBe(0)
    expect(existsSync(join(project, 'node_modules'))).toBe(false)
  })

  it('npm install on a clean copy exits 0 (and builds), and the CLI accepts a code', async () => {
    const r = await run('npm', ['install'], project)
    expect(r.code, r.out).toBe(0)
    expect(existsSync(join(project, 'dist', 'fast-bundle.cjs')), 'npm install did not build').toBe(true)
    // The lock addon is the prebuilt file from the npm tarball: nothing was compiled.
    const addon = join(project, 'node_modules', 'fs-native-extensions')
    expect(existsSync(join(addon, 'prebuilds', 'linux-x64', 'fs-native-extensions.node'))).toBe(true)
    expect(existsSync(join(addon, 'prebuilds', 'linux-arm64', 'fs-native-extensions.node'))).toBe(true)
    expect(existsSync(join(addon, 'build'))).toBe(false)
    await enrolAndLogIn(['node', join(project, 'bin', 'run.js')], project, bareEnv())
  }, 400_000)

  it('npm pack makes a tarball that installs globally (npm install -g --prefix) and works from its bin', async () => {
    const packed = await run('npm', ['pack', '--json'], project)
    expect(packed.code, packed.out).toBe(0)
    const [{filename, files}] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[')))
    const paths = (files as {path: string}[]).map((f) => f.path)
    for (const needed of ['bin/run.js', 'bin/package.json', 'dist/fast-bundle.cjs', 'dist/commands/login/check.js', 'oclif.manifest.json', 'package.json'])
      expect(paths, needed).toContain(needed)
    expect(paths.some((p) => p.startsWith('src/') || p.startsWith('test/'))).toBe(false)

    const {version} = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8'))
    const r = await run('npm', ['install', '-g', '--prefix', prefix, join(project, filename)], work)
    expect(r.code, r.out).toBe(0)
    // No dependency of the installed CLI has an install script (a build step) at all. npm 11
    // lists tfactl's own `prepare` in its install-scripts notice, but runs prepare only for
    // local, git and linked installs, never for a tarball (arborist's rebuild: type 'links').
    expect(r.out).not.toMatch(/node-gyp|gyp ERR/)
    const listed = r.out.split('\n').filter((l) => /^npm warn install-scripts {3}\S/.test(l))
    expect(listed.map((l) => l.replace(/^npm warn install-scripts\s+/, ''))).toEqual(listed.length ? [`tfactl@${version} (prepare: npm run build)`] : [])
    const installed = join(prefix, 'lib', 'node_modules', 'tfactl')
    expect(readdirSync(join(installed, 'node_modules'))).toContain('fs-native-extensions')
    expect(existsSync(join(installed, 'node_modules', 'typescript')), 'devDependencies were installed globally').toBe(false)
    await enrolAndLogIn([join(prefix, 'bin', 'tfactl')], work, bareEnv(join(prefix, 'bin')))
  }, 400_000)
})

describe('dependencies', () => {
  it('imports every runtime dependency somewhere in src/', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
    const sources = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', 'src', 'bin'], {cwd: ROOT, encoding: 'utf8'})
      .split('\n')
      .filter((f) => f && existsSync(join(ROOT, f)))
      .map((f) => readFileSync(join(ROOT, f), 'utf8'))
      .join('\n')
    for (const dep of Object.keys(pkg.dependencies)) {
      const quoted = dep.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
      expect(sources, dep).toMatch(new RegExp(`(from |import\\(|require\\()'${quoted}(/[^']*)?'|\`${quoted}/`))
    }
  })
})
