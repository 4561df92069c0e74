import {execFileSync, spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, symlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {ROOT} from '../helpers/cli.js'
import {awayFromBoundary} from './support.js'

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')

/** The first ```sh block under a heading. */
function shBlock(heading: string): string {
  const section = readme.slice(readme.indexOf(`## ${heading}`))
  const match = /```sh\n([\s\S]*?)```/.exec(section)
  if (!match) throw new Error(`no sh block under ## ${heading}`)
  return match[1]
}

describe('README', () => {
  let dir: string
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it("quick start works as pasted (denied without a code, allowed with oathtool's, refused when replayed)", async () => {
    dir = mkdtempSync(join(tmpdir(), 'tfactl-readme-'))
    symlinkSync(join(ROOT, 'bin'), join(dir, 'bin')) // as if pasted in the project directory
    const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1'}
    delete env.TFACTL_STORE
    delete env.NODE_ENV
    // The two oathtool codes must fall in one 30 s step for the second to be a replay.
    await awayFromBoundary(30, 10)
    const r = spawnSync('bash', ['-c', shBlock('Quick start')], {cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
    expect(r.stdout).toMatch(/"reason": "code_required"/)
    expect(r.stdout).toMatch(/alice: allowed \(code_accepted\)/)
    expect(r.stdout).toMatch(/alice: denied \(code_replayed\)/)
    expect(r.stdout).toMatch(/users: +1 with a secret/)
    expect(r.status, r.stderr).toBe(0)
    expect(execFileSync('stat', ['-c', '%a', join(dir, 'demo', 'store.json')], {encoding: 'utf8'}).trim()).toBe('600')
  })

  it('mentions every command', () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8'))
    const missing = Object.keys(manifest.commands).filter((id) => !readme.includes(id))
    expect(missing).toEqual([])
  })
})
