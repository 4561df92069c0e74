// Bundles the login:check fast path (src/fast.ts → dist/fast-bundle.cjs): one CommonJS file to
// load instead of a tree of ES modules, on the path every login takes. The lock addon
// (fs-native-extensions' prebuilt .node file, see src/store/oslock.ts) stays external: it is
// required at run time, through createRequire(import.meta.url), from the node_modules next to
// this file (a local or a global install alike); import.meta.url becomes this file's URL.
import {build} from 'esbuild'

await build({
  entryPoints: ['src/fast.ts'],
  outfile: 'dist/fast-bundle.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['fs-native-extensions', 'fs-native-extensions/*'],
  define: {'import.meta.url': '__importMetaUrl'},
  banner: {js: "const __importMetaUrl = require('node:url').pathToFileURL(__filename).href;"},
  logLevel: 'warning',
})
