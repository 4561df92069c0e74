#!/usr/bin/env node
// CommonJS on purpose (bin/package.json): login:check runs on every login, and loading a CommonJS
// bundle skips the ES module loader's start-up. Plainly valid login:check calls never load oclif
// (see src/fast.ts); everything else is the oclif CLI.
const fast = process.argv[2] === 'login:check' ? require('../dist/fast-bundle.cjs').fastLoginCheck(process.argv.slice(3)) : Promise.resolve(false)

fast.then(async (handled) => {
  if (handled) return
  const {execute} = await import('@oclif/core')
  await execute({dir: require('node:path').join(__dirname, '..')}) // the project, not bin/package.json
})
