// An unprivileged local attacker for tests that run as root: a system user named for this test
// run (tfactl-mallory-<pid>, test/global-setup.ts, which removes it when the run ends), created on
// first use (idempotent, and safe when several test files create it at the same time).
import {execFile, execFileSync} from 'node:child_process'
import {inject} from 'vitest'
import {BIN, jsonOf, type Run} from './cli.js'

export const MALLORY = inject('mallory')

const lookup = (): {uid: number; gid: number} | undefined => {
  try {
    const uid = Number(execFileSync('id', ['-u', MALLORY], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim())
    const gid = Number(execFileSync('id', ['-g', MALLORY], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim())
    return {uid, gid}
  } catch {
    return undefined
  }
}

/** The attacker's uid and gid; creates the user when missing. */
export function mallory(): {uid: number; gid: number} {
  const found = lookup()
  if (found) return found
  try {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', MALLORY], {stdio: 'ignore'})
  } catch {
    // another test file created it meanwhile (useradd exits 9): looked up below
  }
  const made = lookup()
  if (!made) throw new Error(`cannot create the test user ${MALLORY}`)
  return made
}

/** Runs a command as the attacker. */
export function asMallory(cmd: string[], input = ''): Promise<Run> {
  mallory()
  return new Promise((done) => {
    const env = {PATH: process.env.PATH, NO_COLOR: '1', HOME: '/nonexistent', LANG: 'C'}
    const child = execFile('runuser', ['-u', MALLORY, '--', ...cmd], {env, timeout: 30_000}, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0
      done({code, stdout, stderr, json: jsonOf(stdout)})
    })
    child.stdin!.end(input)
  })
}

/** tfactl itself, run by the attacker. */
export const tfactlAsMallory = (args: string[], input = ''): Promise<Run> => asMallory([process.execPath, BIN, ...args], input)
