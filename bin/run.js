#!/usr/bin/env node
// CommonJS on purpose (bin/package.json): login:check runs on every login, and loading a CommonJS
// bundle skips the ES module loader's start-up. Plainly valid login:check calls never load oclif
// (see src/fast.ts); everything else is the oclif CLI, bundled too (dist/cli-bundle.cjs).
const command = process.argv[2]
const fast =
  command === 'login:check'
    ? require('../dist/fast-bundle.cjs').fastLoginCheck(process.argv.slice(3))
    : command === 'twofactor:status' // settings and counts: also answered without oclif
      ? require('../dist/fast-bundle.cjs').fastStatus(process.argv.slice(3))
      : Promise.resolve(false)

fast.then(async (handled) => {
  if (handled) return
  // One CommonJS bundle of @oclif/core and the commands (scripts/cli-bundle.mjs), not ~160 files.
  const {execute} = require('../dist/cli-bundle.cjs')
  await execute({dir: require('node:path').join(__dirname, '..')}) // the project, not bin/package.json
})
