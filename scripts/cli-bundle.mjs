// Bundles the oclif CLI (@oclif/core and every command, from dist/) into one CommonJS file,
// dist/cli-bundle.cjs: loading @oclif/core file by file (some 160 CommonJS modules) was most of
// `--help`'s start-up. bin/run.js requires this bundle; oclif finds the commands in its
// COMMANDS export (package.json: oclif.commands, the "explicit" strategy), so a command runs
// from the bundle already loaded. The login fast path (scripts/bundle.mjs) is a bundle of its own.
//
// The entry is generated from dist/commands/**: a command added there is bundled without a list
// to keep up to date. Its id is its path with ':' (topicSeparator), as oclif's pattern strategy
// would name it.
import {build} from 'esbuild'
import {readdirSync, rmSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {dirname, join, relative, sep} from 'node:path'

const COMMANDS_DIR = 'dist/commands'
const ENTRY = 'dist/cli-entry.cjs'

function commandFiles(dir) {
  return readdirSync(dir, {withFileTypes: true}).flatMap((e) =>
    e.isDirectory() ? commandFiles(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : [],
  )
}

// By file, found from where the package resolves (its package.json exports nothing else); the
// entry below requires them relative to dist/, and esbuild takes them into the bundle: the package
// is a build input (a development dependency), never required at run time.
const AUTOCOMPLETE_DIR = relative('dist', join(dirname(createRequire(import.meta.url).resolve('@oclif/plugin-autocomplete')), 'commands', 'autocomplete'))
  .split(sep)
  .join('/')
const AUTOCOMPLETE = {
  autocomplete: `${AUTOCOMPLETE_DIR}/index.js`,
  'autocomplete:create': `${AUTOCOMPLETE_DIR}/create.js`,
  'autocomplete:script': `${AUTOCOMPLETE_DIR}/script.js`,
}

// Each command is required on first use (a getter): `--help` reads oclif.manifest.json and runs no
// command module at all; running one command evaluates that command's modules.
const files = commandFiles(COMMANDS_DIR).sort()
const id = (file) =>
  relative(COMMANDS_DIR, file)
    .replace(/\.js$/, '')
    .split(sep)
    .filter((p) => p !== 'index')
    .join(':')
writeFileSync(
  ENTRY,
  [
    "exports.execute = require('@oclif/core').execute",
    'const COMMANDS = {}',
    ...files.map(
      (f) =>
        `Object.defineProperty(COMMANDS, ${JSON.stringify(id(f))}, {enumerable: true, get: () => require('./${relative('dist', f).split(sep).join('/')}').default})`,
    ),
    // Shell completion (@oclif/plugin-autocomplete): its commands join ours here instead of being
    // loaded as a plugin, which oclif does with import() (the plugin is an ES module). Neither a
    // script compiled with a code cache (bin/run.js) nor the standalone executable can import():
    // that was ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING.
    ...Object.entries(AUTOCOMPLETE).map(
      ([cmd, file]) => `Object.defineProperty(COMMANDS, ${JSON.stringify(cmd)}, {enumerable: true, get: () => require(${JSON.stringify(file)}).default})`,
    ),
    'exports.COMMANDS = COMMANDS',
    // package.json oclif.hooks: a mistyped command gets "did you mean" (src/hooks/not-found.ts)
    "Object.defineProperty(exports, 'NOT_FOUND', {enumerable: true, get: () => require('./hooks/not-found.js').default})",
    // The standalone executable (src/sea.ts) gives oclif its manifest from memory through this class.
    "exports.Plugin = require('@oclif/core').Plugin",
    '',
  ].join('\n'),
)

// Not bundled: native modules (they load a .node file beside them), and libraries imported only
// in the branches that use them (prompts, QR codes), which would only make the bundle bigger to parse,
// and the TypeScript compilers oclif looks for only when it runs from sources (development).
const external = ['fs-native-extensions', 'fs-native-extensions/*', '@inquirer/prompts', 'qrcode', 'typescript', 'ts-node', 'tsx']

// The PostgreSQL client stays in dist/pg-client.cjs (scripts/bundle.mjs), loaded only for a database store.
const pgClient = {
  name: 'pg-client-apart',
  setup(b) {
    b.onResolve({filter: /\/client\.js$/}, (args) => (args.importer.includes('/store/postgres/') ? {path: './pg-client.cjs', external: true} : undefined))
  },
}

try {
  const result = await build({
    metafile: true,
    plugins: [pgClient],
    entryPoints: [ENTRY],
    outfile: 'dist/cli-bundle.cjs',
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external,
    // smaller to parse; identifiers (class names) kept
    minifyWhitespace: true,
    minifySyntax: true,
    // import() becomes a require(): `await import('@inquirer/prompts')` loads the prompts' CommonJS
    // build. A script compiled with a code cache has no loader for import() unless Node is given
    // --experimental-vm-modules, and the standalone executable (src/sea.ts) serves every module
    // it needs through require.
    supported: {'dynamic-import': false},
    define: {'import.meta.url': '__importMetaUrl'},
    banner: {js: "const __importMetaUrl = require('node:url').pathToFileURL(__filename).href;"},
    logLevel: 'warning',
  })
  // the files it holds, for the Debian package's copyright file (as scripts/bundle.mjs does)
  writeFileSync('dist/cli-bundle.cjs.inputs.json', JSON.stringify(Object.keys(result.metafile.inputs)))
} finally {
  if (!process.env.KEEP_ENTRY) rmSync(ENTRY, {force: true})
}
console.log(`dist/cli-bundle.cjs: ${files.length} commands`)
