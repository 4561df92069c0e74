#!/usr/bin/env node
// login:check runs on every login: plainly valid calls skip oclif's start-up (see src/fast.ts).
const fast = process.argv[2] === 'login:check' && (await import('../dist/fast-bundle.js')).fastLoginCheck(process.argv.slice(3))

if (!(await fast)) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
