// Writes dist/cli-bundle.cjs.v8cache: V8's code cache of the CLI bundle after a `--help` run, so
// that the functions start-up needs are compiled already (bin/run.js loads it; a cache another
// Node version rejects only costs the parse it would have saved).
import {execFileSync} from 'node:child_process'
import {existsSync, rmSync} from 'node:fs'
import {resolve} from 'node:path'

const bundle = resolve('dist/cli-bundle.cjs')
rmSync(`${bundle}.v8cache`, {force: true})
execFileSync(process.execPath, ['bin/run.js', '--help'], {env: {...process.env, TFACTL_WRITE_CODE_CACHE: bundle}, stdio: ['ignore', 'ignore', 'inherit']})
if (!existsSync(`${bundle}.v8cache`)) throw new Error(`no code cache written for ${bundle}`)
