import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, relative} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {ROOT} from '../helpers/cli.js'
import {awayFromBoundary} from './support.js'

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
/** README.md and every guide under docs/, by path from the project root. */
const pages = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
]
const text = (page: string) => readFileSync(join(ROOT, page), 'utf8')

/** GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-')

/** The anchors a page offers: one per heading outside code blocks (repeats get -1, -2, …). */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>()
  let fenced = false
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced
    const heading = fenced ? null : /^#{1,6} (.*)$/.exec(line)
    if (!heading) continue
    const base = slug(heading[1])
    const n = seen.get(base) ?? 0
    seen.set(n === 0 ? base : `${base}-${n}`, 0)
    seen.set(base, n + 1)
  }
  return new Set(seen.keys())
}

/** The first ```sh block under a heading. */
function shBlock(heading: string): string {
  const section = readme.slice(readme.indexOf(`## ${heading}`))
  const match = /```sh\n([\s\S]*?)```/.exec(section)
  if (!match) throw new Error(`no sh block under ## ${heading}`)
  return match[1]
}

describe('README and docs', () => {
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

  it('stays short: at most 250 lines, the rest in docs/', () => {
    expect(readme.split('\n').length).toBeLessThanOrEqual(250)
  })

  it('the guides, not only the generated reference, show every command at work', () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8'))
    const guides = pages
      .filter((p) => p !== 'docs/commands.md')
      .map(text)
      .join('\n')
    const missing = Object.keys(manifest.commands).filter((id) => !guides.includes(id))
    expect(missing).toEqual([])
  })

  it('every relative link in README.md and docs/ points at a file that exists, and at a heading in it', () => {
    const broken: string[] = []
    for (const page of pages) {
      const source = text(page).replace(/```[\s\S]*?```/g, '')
      for (const [, target] of source.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue // http:, mailto:
        const [file, hash] = target.split('#')
        const path = file ? join(dirname(page), file) : page
        if (!existsSync(join(ROOT, path))) broken.push(`${page}: ${target} (no such file)`)
        else if (hash && path.endsWith('.md') && !anchors(text(path)).has(hash)) broken.push(`${page}: ${target} (no such heading in ${relative('.', path)})`)
      }
    }
    expect(broken).toEqual([])
  })
})
