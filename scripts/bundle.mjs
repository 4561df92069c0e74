// Bundles the login:check fast path (src/fast.ts → dist/fast-bundle.js): one file to load
// instead of a tree of modules, on the path every login takes. fs-ext stays external (native).
import {build} from 'esbuild'

await build({
  entryPoints: ['src/fast.ts'],
  outfile: 'dist/fast-bundle.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['fs-ext'],
  banner: {js: "import {createRequire as __createRequire} from 'node:module'; const require = __createRequire(import.meta.url);"},
  logLevel: 'warning',
})
