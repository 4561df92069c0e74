// Writes V8's code cache beside each bundle bin/run.js loads (`<bundle>.<arch>.v8cache`: this
// machine's architecture, which V8 does not check; see bin/run.js), taken after a
// real run so that the functions start-up needs are compiled already: the CLI bundle after
// `--help`, the login bundle after a login:check that accepts a code (in a throwaway store), the
// PostgreSQL client after a login that finds no server.
// A cache another Node version rejects only costs the parse it would have saved.
import {spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {base32Decode} from '../dist/core/base32.js'
import {hotp} from '../dist/core/totp.js'

/** Runs the CLI; its stdout (a login at a step boundary may be denied: the cache is written all the same). */
const run = (args, cache) =>
  spawnSync(process.execPath, ['bin/run.js', ...args], {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', TFACTL_STORE: '', ...(cache ? {TFACTL_WRITE_CODE_CACHE: cache} : {})},
    stdio: ['ignore', 'pipe', 'ignore'],
  }).stdout

function writeCache(bundle, args) {
  const cache = `${bundle}.${process.arch}.v8cache`
  // (and the unqualified name of earlier builds, which every architecture would load)
  for (const old of [cache, `${bundle}.v8cache`]) rmSync(old, {force: true})
  run(args, bundle)
  if (!existsSync(cache)) throw new Error(`no code cache written for ${bundle}`)
}

writeCache(resolve('dist/cli-bundle.cjs'), ['--help'])

const dir = mkdtempSync(join(tmpdir(), 'tfactl-code-cache-'))
try {
  const store = ['--store', join(dir, 'store.json')]
  run(['twofactor:enable', ...store])
  const {secret} = JSON.parse(run(['user:secret:renew', 'alice', '--no-verify', '--qr', 'none', '--json', ...store])).users[0]
  const code = hotp(base32Decode(secret), Math.floor(Date.now() / 30_000), 6, 'SHA1')
  writeCache(resolve('dist/fast-bundle.cjs'), ['login:check', 'alice', '--code', code, ...store])
  // The PostgreSQL client: a login against a port where no server listens (none is needed to
  // build) still compiles its start-up, the pool and the connection code.
  writeCache(resolve('dist/pg-client.cjs'), ['login:check', 'alice', '--code', '123456', '--store', 'postgresql://tfactl@127.0.0.1:1/tfactl'])
} finally {
  rmSync(dir, {recursive: true, force: true})
}
