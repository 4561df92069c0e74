#!/usr/bin/env node
// CommonJS on purpose (bin/package.json): login:check runs on every login, and loading a CommonJS
// bundle skips the ES module loader's start-up. Plainly valid login:check calls never load oclif
// (see src/login/fast.ts); everything else is the oclif CLI, bundled too (dist/cli-bundle.cjs).
const {join} = require('node:path')
const command = process.argv[2]
const loaded = new Map() // bundle file → its module, as require's cache
const fastBundle = () => requireCached(join(__dirname, '..', 'dist', 'fast-bundle.cjs'))
const fast =
  command === 'login:check'
    ? fastBundle().fastLoginCheck(process.argv.slice(3))
    : command === 'twofactor:status' // settings and counts: also answered without oclif
      ? fastBundle().fastStatus(process.argv.slice(3))
      : Promise.resolve(false)

/**
 * Loads a CommonJS bundle as require() would, with V8's code cache `<file>.<arch>.v8cache`
 * (written by `npm run build`, scripts/code-cache.mjs): parsing the CLI bundle is a fifth of
 * `--help`'s time, the login bundle's a few milliseconds of every login, and the PostgreSQL
 * client's a few more. A cache V8 rejects (another Node version) only costs that parse again.
 * The name carries the CPU architecture because V8 does not check it: arm64's Node accepts a
 * cache x64 made and then crashes or misbehaves (seen under qemu-aarch64), so a package built on
 * x64 and installed on arm64 must find no cache rather than that one.
 */
function requireCached(file) {
  const done = loaded.get(file)
  if (done) return done.exports
  const fs = require('node:fs')
  const vm = require('node:vm')
  const {dirname, relative, sep} = require('node:path')
  const cacheFile = `${file}.${process.arch}.v8cache`
  let cachedData
  try {
    cachedData = fs.readFileSync(cacheFile)
  } catch {
    // none: compile from source
  }
  const source = fs.readFileSync(file, 'utf8')
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    // The name stack traces show. V8 keeps the name a cache was made with (Node 20: the build
    // machine's path, in every installed copy), so it is the same everywhere: tfactl/dist/<bundle>.
    filename: `tfactl/${relative(join(__dirname, '..'), file).split(sep).join('/')}`,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  })
  const module = {exports: {}}
  loaded.set(file, module)
  // A bundle's own sibling bundles (the login bundle's `./pg-client.cjs`) load the same way.
  const plain = require('node:module').createRequire(file)
  // oclif requires the CLI bundle again by its path (package.json oclif.commands and hooks): it
  // gets the copy loaded here, not a second, uncached evaluation (src/sea.ts does the same).
  const local = Object.assign(
    (id) => (id.startsWith('./') && id.endsWith('.cjs') ? requireCached(join(dirname(file), id)) : (loaded.get(id)?.exports ?? plain(id))),
    plain,
  )
  script.runInThisContext()(module.exports, local, module, file, dirname(file))
  if (process.env.TFACTL_WRITE_CODE_CACHE === file) process.once('exit', () => fs.writeFileSync(cacheFile, script.createCachedData()))
  return module.exports
}

fast.then(async (handled) => {
  if (handled) return
  // One CommonJS bundle of @oclif/core and the commands (scripts/cli-bundle.mjs), not ~160 files.
  const {execute} = requireCached(join(__dirname, '..', 'dist', 'cli-bundle.cjs'))
  await execute({dir: join(__dirname, '..')}) // the project, not bin/package.json
})
