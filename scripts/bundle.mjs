// Bundles the login:check fast path (src/login/fast.ts → dist/fast-bundle.cjs): one CommonJS file to
// load instead of a tree of ES modules, on the path every login takes. The lock addon
// (fs-native-extensions' prebuilt .node file, see src/os/oslock.ts) stays external: it is
// required at run time, through createRequire(import.meta.url), from the node_modules next to
// this file (a local or a global install alike); import.meta.url becomes this file's URL. The PostgreSQL client (pg) is bundled apart
// (src/store/postgres/client.ts → dist/pg-client.cjs) and loaded only for a database store, so
// the file store's path loads no more than before; its optional native binding (pg-native) and
// Cloudflare socket are never used and stay out.
import {writeFileSync} from 'node:fs'
import {build} from 'esbuild'

/** Writes `<bundle>.inputs.json`, the files a bundle holds: the Debian package's copyright file lists their packages' licences. */
export const writeInputs = (outfile, result) => writeFileSync(`${outfile}.inputs.json`, JSON.stringify(Object.keys(result.metafile.inputs)))

const pgClient = {
  name: 'pg-client-apart',
  setup(b) {
    b.onResolve({filter: /\/client\.js$/}, (args) => (args.importer.includes('/store/postgres/') ? {path: './pg-client.cjs', external: true} : undefined))
  },
}

writeInputs(
  'dist/pg-client.cjs',
  await build({
    metafile: true,
    entryPoints: ['src/store/postgres/client.ts'],
    outfile: 'dist/pg-client.cjs',
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['pg-native', 'cloudflare:sockets'],
    // pg asks whether it runs on Cloudflare Workers by touching the Response and navigator
    // globals; on Node, that loads Node's whole fetch implementation (undici): 8 ms of every
    // database login. Within this file the two names are undefined, so pg takes its Node path at once.
    banner: {js: "'use strict'; var Response = void 0, navigator = void 0;"},
    minifyWhitespace: true,
    minifySyntax: true,
    logLevel: 'warning',
  }),
)

writeInputs(
  'dist/fast-bundle.cjs',
  await build({
    metafile: true,
    entryPoints: ['src/login/fast.ts'],
    plugins: [pgClient],
    outfile: 'dist/fast-bundle.cjs',
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['fs-native-extensions', 'fs-native-extensions/*'],
    define: {'import.meta.url': '__importMetaUrl'},
    banner: {js: "const __importMetaUrl = require('node:url').pathToFileURL(__filename).href;"},
    logLevel: 'warning',
  }),
)
