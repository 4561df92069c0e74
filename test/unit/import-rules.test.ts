// The layering rules `npm run lint` enforces (scripts/check-imports.mjs): the tree as it is keeps
// them, and each kind of crossing in a tree of its own is refused with the rule it breaks.
import {spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')
const SCRIPT = join(ROOT, 'scripts/check-imports.mjs')
const dirs: string[] = []
afterAll(() => {
  for (const d of dirs) rmSync(d, {recursive: true, force: true})
})

/** Runs the checker on a tree of `files` (path → source). */
function check(files: Record<string, string>) {
  const root = mkdtempSync(join(tmpdir(), 'tfactl-imports-'))
  dirs.push(root)
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), {recursive: true})
    writeFileSync(join(root, path), text)
  }
  const r = spawnSync(process.execPath, [SCRIPT, root], {encoding: 'utf8'})
  return {status: r.status, stderr: r.stderr}
}

describe('import rules', () => {
  it('holds for the source tree', () => {
    const r = spawnSync(process.execPath, [SCRIPT, ROOT], {encoding: 'utf8'})
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
  })

  it.each([
    ['a command importing the file backend', 'src/commands/x.ts', "import {FileBackend} from '../store/file/backend.js'", 'never a backend folder'],
    [
      'the base command importing the database backend',
      'src/base-command.ts',
      "import type {PgStore} from './store/postgres/store.js'",
      'never a backend folder',
    ],
    ['the responder importing the users-file code', 'src/radius/x.ts', "const m = await import('../store/oathfile/file.js')", 'never a backend folder'],
    ['the login path importing a backend', 'src/login/x.ts', "export {Store} from '../store/file/store.js'", 'never a backend folder'],
    ['the database backend borrowing the file codec', 'src/store/postgres/x.ts', "import {decodeStore} from '../file/codec.js'", 'another backend'],
    ['a store module importing the UI', 'src/store/x.ts', "import {paint} from '../ui/colour.js'", 'storage prints nothing'],
    ['a backend importing the UI', 'src/store/oathfile/x.ts', "import {warningPrefix} from '../../ui/colour.js'", 'storage prints nothing'],
    ['an OS helper importing the store', 'src/os/x.ts', "import {sidecars} from '../store/paths.js'", 'src/os'],
    ['core importing the store', 'src/core/x.ts', "import type {Doc} from '../store/backend.js'", 'src/core is pure'],
  ])('refuses %s', (_, file, line, rule) => {
    const r = check({[file]: `${line}\n`})
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(file)
    expect(r.stderr).toContain(rule)
  })

  it('lets commands use the seam and the file store use the users file', () => {
    const r = check({
      'src/commands/x.ts': "import {openStore} from '../store/backend.js'\nimport {resolveStore} from '../store/config.js'\n",
      'src/store/file/x.ts': "import {usersFileProjection} from '../oathfile/projection.js'\nimport {decodeStore} from '../sealed.js'\n",
      'src/store/backend.ts': "const m = await import('./postgres/store.js')\n",
    })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
  })
})
