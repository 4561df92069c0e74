// The bundles load with V8's code cache made at build time (scripts/code-cache.mjs). An installed
// copy lives elsewhere than the build: its stack traces must not name the build machine's path,
// the CLI bundle must be evaluated once, not a second time when oclif requires it by path, and
// only a cache of this CPU architecture may be read (V8 takes another's and then crashes).
import {spawnSync} from 'node:child_process'
import {cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ROOT} from '../helpers/cli.js'

// Records, for every file read, the bundle frames on the stack: what a stack trace would show.
const PRELOAD = `
const fs = require('node:fs')
const read = fs.readFileSync
const frames = new Set()
fs.readFileSync = function (...args) {
  for (const line of new Error().stack.split('\\n')) {
    const m = /\\(?([^ ()]*(?:bundle|pg-client)\\.cjs):\\d+:\\d+\\)?$/.exec(line)
    if (m) frames.add(m[1])
  }
  return read.apply(this, args)
}
process.on('exit', () => process.stderr.write('FRAMES ' + JSON.stringify([...frames]) + '\\n'))
`
// Records every code cache file read.
const CACHE_READS = `
const fs = require('node:fs')
const read = fs.readFileSync
const caches = []
fs.readFileSync = function (file, ...rest) {
  if (String(file).endsWith('.v8cache')) caches.push(String(file))
  return read.call(this, file, ...rest)
}
process.on('exit', () => process.stderr.write('CACHES ' + JSON.stringify(caches) + '\\n'))
`

describe('bundles loaded with the code cache, in a copy installed elsewhere', () => {
  let dir: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tfactl-installed-'))
    for (const entry of ['bin', 'dist', 'package.json', 'oclif.manifest.json']) cpSync(join(ROOT, entry), join(dir, entry), {recursive: true})
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
    writeFileSync(join(dir, 'preload.cjs'), PRELOAD)
    writeFileSync(join(dir, 'cache-reads.cjs'), CACHE_READS)
    // a store with a user, so that a login reads it
    const store = ['--store', join(dir, 'state', 'store.json')]
    spawnSync(process.execPath, [join(dir, 'bin', 'run.js'), 'twofactor:enable', ...store])
    spawnSync(process.execPath, [join(dir, 'bin', 'run.js'), 'user:secret:renew', 'alice', '--qr', 'none', ...store])
  })
  afterAll(() => rmSync(dir, {recursive: true, force: true}))

  const framesOf = (...args: string[]): string[] => {
    const r = spawnSync(process.execPath, ['-r', join(dir, 'preload.cjs'), join(dir, 'bin', 'run.js'), ...args], {
      encoding: 'utf8',
      env: {...process.env, NO_COLOR: '1'},
    })
    return JSON.parse(/FRAMES (.*)/.exec(r.stderr)?.[1] ?? '[]')
  }

  it('name the bundle as tfactl/dist/<bundle>, never the build directory', () => {
    const store = ['--store', join(dir, 'state', 'store.json')]
    const frames = [...framesOf('user:list', ...store), ...framesOf('login:check', 'alice', '--code', '123456', ...store)]
    expect(frames).toContain('tfactl/dist/cli-bundle.cjs')
    expect(frames).toContain('tfactl/dist/fast-bundle.cjs')
    expect(frames.filter((f) => f.includes(ROOT) || f.startsWith('/'))).toEqual([])
  })

  it("read the code cache made for this CPU architecture, never another's or an unqualified one", () => {
    // what a package built on another architecture, or an older build, would have left beside the bundle
    for (const name of ['cli-bundle.cjs.v8cache', ...['x64', 'arm64'].filter((a) => a !== process.arch).map((a) => `cli-bundle.cjs.${a}.v8cache`)])
      writeFileSync(join(dir, 'dist', name), 'not a code cache of this machine')
    const r = spawnSync(process.execPath, ['-r', join(dir, 'cache-reads.cjs'), join(dir, 'bin', 'run.js'), '--help'], {
      encoding: 'utf8',
      env: {...process.env, NO_COLOR: '1'},
    })
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(/CACHES (.*)/.exec(r.stderr)?.[1] ?? 'null')).toEqual([join(dir, 'dist', `cli-bundle.cjs.${process.arch}.v8cache`)])
  })

  it('evaluate the CLI bundle once: oclif requiring it by path gets the same module', () => {
    // a command run reads its store from inside the bundle; a second evaluation would show its own path
    const frames = framesOf('user:list', '--store', join(dir, 'state', 'store.json'))
    expect(frames).toEqual(['tfactl/dist/cli-bundle.cjs'])
  })
})
