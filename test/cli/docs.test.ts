import {execFileSync, spawnSync} from 'node:child_process'
import {appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {ROOT} from '../helpers/cli.js'

const GEN = join(ROOT, 'scripts', 'gen-docs.mjs')
const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8'))
const gen = (...args: string[]) => spawnSync(process.execPath, [GEN, ...args], {cwd: ROOT, encoding: 'utf8'})

describe('generated command reference and man pages', () => {
  let dir: string | undefined
  afterEach(() => {
    if (dir) rmSync(dir, {recursive: true, force: true})
    dir = undefined
  })

  it('the checked-in reference and man pages are what the commands say', () => {
    const r = gen('--check')
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
  })

  it('a stale reference fails the check and names npm run docs', () => {
    dir = mkdtempSync(join(tmpdir(), 'tfactl-docs-'))
    expect(gen('--dir', dir).status).toBe(0)
    appendFileSync(join(dir, 'man', 'tfactl-user.1'), '.PP\nhand edit\n')
    const r = gen('--check', '--dir', dir)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/man\/tfactl-user\.1.*run `npm run docs`/i)
  })

  it('the reference documents every command, flag and example', () => {
    const reference = readFileSync(join(ROOT, 'docs', 'commands.md'), 'utf8')
    for (const [id, command] of Object.entries<any>(manifest.commands)) {
      const section = reference.slice(reference.indexOf(`# ${id}\n`))
      expect(section, id).not.toBe(reference)
      const own = section.slice(0, section.indexOf('\n#', 2) > 0 ? section.indexOf('\n#', 2) : undefined)
      for (const flag of Object.values<any>(command.flags)) if (flag.helpGroup !== 'GLOBAL') expect(own, `${id} --${flag.name}`).toContain(`${flag.name}`)
      for (const example of command.examples ?? []) expect(own, id).toContain(String(example).replace('<%= config.bin %>', 'tfactl'))
    }
  })

  it('every man page is valid roff: man reports no warning at 80 columns', () => {
    const pages = readdirSync(join(ROOT, 'man')).filter((f) => f.endsWith('.1'))
    expect(pages).toEqual(
      expect.arrayContaining(['tfactl.1', 'tfactl-twofactor.1', 'tfactl-user.1', 'tfactl-login.1', 'tfactl-store.1', 'tfactl-ssh.1', 'tfactl-radius.1']),
    )
    for (const page of pages) {
      // lintian's manpage check: man --warnings, UTF-8, 80 columns; anything on stderr is a warning
      const r = spawnSync('man', ['--warnings', '-E', 'UTF-8', '-l', '-Tutf8', '-Z', join(ROOT, 'man', page)], {
        encoding: 'utf8',
        env: {...process.env, LC_ALL: 'C.UTF-8', MANROFFSEQ: '', MANWIDTH: '80'},
      })
      expect(r.stderr, page).toBe('')
      expect(r.status, page).toBe(0)
    }
  })

  it('tfactl(1) documents every environment variable the code reads', () => {
    const sources = execFileSync('grep', ['-rhoE', String.raw`process\.env\.[A-Z_]+|env\.[A-Z][A-Z_]+`, join(ROOT, 'src')], {encoding: 'utf8'})
    const read = new Set(
      sources
        .split('\n')
        .filter(Boolean)
        .map((m) => m.slice(m.lastIndexOf('.') + 1)),
    )
    read.delete('HOME') // the login directory: nothing tfactl-specific
    expect(read.size).toBeGreaterThan(5)
    const page = readFileSync(join(ROOT, 'man', 'tfactl.1'), 'utf8').replaceAll('\\-', '-')
    const environment = page.slice(page.indexOf('.SH ENVIRONMENT'), page.indexOf('.SH FILES'))
    expect([...read].filter((name) => !environment.includes(name))).toEqual([])
  })

  it('each topic page opens with a NAME line whatis can index, and tfactl(1) names every command', () => {
    const main = execFileSync('man', ['-l', join(ROOT, 'man', 'tfactl.1')], {encoding: 'utf8', env: {...process.env, MANWIDTH: '200'}})
    // every command but the hidden ones (the completion plugin's internals), which gen-docs leaves out as --help does
    for (const [id, c] of Object.entries<{hidden?: boolean}>(manifest.commands)) if (!c.hidden) expect(main).toContain(`tfactl ${id}`)
    const whatis = execFileSync('lexgrog', [join(ROOT, 'man', 'tfactl-user.1')], {encoding: 'utf8'})
    expect(whatis).toMatch(/tfactl-user - per-user secrets/)
  })
})
