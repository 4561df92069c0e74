// Bundles the login:check fast path (src/fast.ts → dist/fast-bundle.cjs): one CommonJS file to
// load instead of a tree of ES modules, on the path every login takes. fs-ext stays external
// (native); import.meta.url (used to find it) becomes this file's URL. The PostgreSQL client (pg)
// is bundled too, for database stores; its optional native binding (pg-native) and Cloudflare
// socket are never used and stay out.
import {build} from 'esbuild'

await build({
  entryPoints: ['src/fast.ts'],
  outfile: 'dist/fast-bundle.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['fs-ext', 'pg-native', 'cloudflare:sockets'],
  define: {'import.meta.url': '__importMetaUrl'},
  banner: {js: "const __importMetaUrl = require('node:url').pathToFileURL(__filename).href;"},
  logLevel: 'warning',
})
