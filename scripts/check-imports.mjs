// The layering rules of src/ (docs: guide "Shape of the code"), checked on every `npm run lint`:
// - the commands, the base command, the login path and the RADIUS responder know the store seam
//   (src/store/backend.ts and the shared store modules) only, never a backend folder;
// - a backend folder never reaches into another one; of the shared store modules only the seam
//   itself (backend.ts, which opens them) names one;
// - storage (src/store, src/os) prints nothing and so never imports src/ui;
// - src/os (the OS helpers) stands on its own, and src/core stays pure (src/core only).
// Every import counts, type-only and dynamic ones too: what a module names is what it knows.
//
// Usage: node scripts/check-imports.mjs [ROOT]   (exit 1 and one line per broken rule)
import {readdirSync, readFileSync} from 'node:fs'
import {join, posix} from 'node:path'

const root = process.argv[2] ?? '.'
const BACKENDS = ['src/store/file/', 'src/store/postgres/', 'src/store/oathfile/']
const SEAM = 'src/store/backend.ts'

const under = (file, dir) => file.startsWith(dir)
const backendOf = (file) => BACKENDS.find((b) => under(file, b))

/** Each rule: a name, and whether `from` may not import `to` (both paths from the root, .ts). */
const RULES = [
  {
    rule: 'commands, the base, the login path and the responder know the store seam only (src/store/backend.ts), never a backend folder',
    broken: (from, to) =>
      (under(from, 'src/commands/') || from === 'src/base-command.ts' || under(from, 'src/login/') || under(from, 'src/radius/')) &&
      backendOf(to) !== undefined,
  },
  {
    rule: 'only src/store reaches a backend folder',
    broken: (from, to) => !under(from, 'src/store/') && backendOf(to) !== undefined,
  },
  {
    rule: 'a backend folder does not reach into another backend (the file store keeps the pam_oath users file: file/ may use oathfile/)',
    broken: (from, to) => {
      const a = backendOf(from)
      const b = backendOf(to)
      return a !== undefined && b !== undefined && a !== b && !(a === 'src/store/file/' && b === 'src/store/oathfile/')
    },
  },
  {
    rule: 'shared store modules do not name a backend folder (the seam, src/store/backend.ts, opens them)',
    broken: (from, to) => under(from, 'src/store/') && backendOf(from) === undefined && from !== SEAM && backendOf(to) !== undefined,
  },
  {
    rule: 'storage prints nothing: src/store and src/os never import src/ui',
    broken: (from, to) => (under(from, 'src/store/') || under(from, 'src/os/')) && under(to, 'src/ui/'),
  },
  {
    rule: 'src/os (the OS helpers) imports only src/os and src/core/errors',
    broken: (from, to) => under(from, 'src/os/') && !under(to, 'src/os/') && to !== 'src/core/errors.ts',
  },
  {
    rule: 'src/core is pure: it imports only src/core',
    broken: (from, to) => under(from, 'src/core/') && !under(to, 'src/core/'),
  },
]

const walk = (dir) =>
  readdirSync(join(root, dir), {withFileTypes: true}).flatMap((e) =>
    e.isDirectory() ? walk(`${dir}/${e.name}`) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [`${dir}/${e.name}`] : [],
  )

/** Relative module specifiers: `from '…'` (import and export), `import('…')`, `import '…'`. */
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm

const problems = []
for (const from of walk('src')) {
  const text = readFileSync(join(root, from), 'utf8')
  for (const m of text.matchAll(SPECIFIER)) {
    const to = posix.normalize(posix.join(posix.dirname(from), m[1])).replace(/\.js$/, '.ts')
    for (const {rule, broken} of RULES) if (broken(from, to)) problems.push(`${from}: imports ${to}: ${rule}`)
  }
}
for (const p of problems) process.stderr.write(`${p}\n`)
if (problems.length > 0) {
  process.stderr.write(`${problems.length} import(s) break the layering rules (scripts/check-imports.mjs)\n`)
  process.exitCode = 1
}
