import {TfaError} from '../core/errors.js'
import type {Method, Service} from '../core/login.js'
import {checkUsername} from '../core/validate.js'
import {checkLogin, type LoginInput} from './check.js'
import {openStore, type StoreBackend} from '../store/backend.js'
import {ignoredWarning, resolveStore} from '../store/config.js'
import {onNotice} from '../store/notices.js'
import {readCodeLine} from '../code-input.js'
import {loginDefault, loginOptionTable} from './flags.js'
import {warningPrefix} from '../ui/colour.js'
import {describeError} from '../ui/errors.js'
import {statusLines, statusResult} from '../ui/output.js'

/**
 * `login:check` without oclif's start-up (bin/run.js routes here): it runs on every login, and
 * oclif's loading would triple its time. Only plainly valid arguments are handled here; anything
 * else — help, a bad or unknown flag, a prompt to show, JSON to colour on a terminal — returns
 * false and goes through the oclif command, which gives the full messages. Both paths share
 * checkLogin, the error rendering and the audit record, so they answer alike.
 */

/** Storage's notices (a stale lock removed, …) as warnings on stderr, as the oclif commands show them; returns the list, for --json. */
const showNotices = (): string[] => {
  const seen: string[] = []
  onNotice((message) => {
    seen.push(message)
    process.stderr.write(`${warningPrefix()} ${message}\n`)
  })
  return seen
}

const OPTIONS: Record<string, readonly string[] | null> = {...loginOptionTable(), '--store': null, '--key-file': null}

interface FastInput extends LoginInput {
  store?: string
  keyFile?: string
  json: boolean
}

export function parseLoginCheck(argv: string[]): FastInput | undefined {
  const flags = new Map<string, string>()
  let user: string | undefined
  let json = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--json' && !json) {
      json = true
      continue
    }
    if (!arg.startsWith('-')) {
      if (user !== undefined) return undefined
      user = arg
      continue
    }
    const eq = arg.indexOf('=')
    const name = eq > 0 ? arg.slice(0, eq) : arg
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i]
    if (!(name in OPTIONS) || flags.has(name) || value === undefined || (value.startsWith('-') && !(name === '--code' && value === '-'))) return undefined
    if (OPTIONS[name] && !OPTIONS[name]!.includes(value)) return undefined
    flags.set(name, value)
  }
  const service = (flags.get('--service') ?? loginDefault('service')) as Service
  const method = (flags.get('--method') ?? loginDefault('method')) as Method
  if (user === undefined || (method === 'key' && service !== 'ssh')) return undefined
  try {
    checkUsername(user)
  } catch {
    return undefined
  }
  return {user, service, method, code: flags.get('--code'), store: flags.get('--store'), keyFile: flags.get('--key-file'), json}
}

function warnIgnored(ignored: string[]): void {
  const note = ignoredWarning(ignored)
  if (note) process.stderr.write(`${warningPrefix()} ${note}\n`)
}

export async function fastLoginCheck(argv: string[]): Promise<boolean> {
  const input = parseLoginCheck(argv)
  if (!input) return false
  if (input.json ? process.stdout.isTTY : input.code === undefined && process.stdin.isTTY && process.stdout.isTTY) return false
  const warnings = showNotices()
  let store: StoreBackend | undefined
  let outcome: {outcome: string; reason: string | null}
  try {
    const {spec, keyFile, ignored} = resolveStore({store: input.store, keyFile: input.keyFile})
    warnIgnored(ignored)
    store = await openStore(spec, {keyFile})
    if (input.code === '-') input.code = await readCodeLine()
    const {result, lines} = await checkLogin(store, input)
    process.exitCode = result.allowed ? 0 : 1
    process.stdout.write(input.json ? `${JSON.stringify(warnings.length > 0 ? {...result, warnings} : result, null, 2)}\n` : `${lines.join('\n')}\n`)
    outcome = {outcome: result.allowed ? 'allowed' : 'denied', reason: result.reason}
  } catch (error) {
    const report = describeError(error as Error)
    process.exitCode = report.exit
    if (input.json) process.stdout.write(`${JSON.stringify(report.json, null, 2)}\n`)
    else process.stderr.write(report.text)
    outcome = {outcome: 'error', reason: error instanceof TfaError ? (error.code ?? null) : 'error'}
  }
  if (store) {
    const problem = await store.recordEvent('login:check', input.user, outcome)
    if (problem) process.stderr.write(`${warningPrefix()} ${problem}\n`)
    await store.close()
  }
  return true
}

/**
 * `twofactor:status` without oclif's start-up, for plain calls (`--json`, `--store`, `--key-file`): it reads
 * settings and counts only (Store.summary), and oclif's start-up would be most of its time.
 * Anything else (help, other flags, JSON to colour on a terminal) returns false and goes through
 * the oclif command, which prints the same (src/ui/output.ts statusLines/statusResult).
 */
export async function fastStatus(argv: string[]): Promise<boolean> {
  let json = false
  const values: {'--store'?: string; '--key-file'?: string} = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--json' && !json) {
      json = true
      continue
    }
    const name = arg === '--store' || arg.startsWith('--store=') ? '--store' : arg === '--key-file' || arg.startsWith('--key-file=') ? '--key-file' : undefined
    if (!name || values[name] !== undefined) return false // anything else, or a flag given twice: oclif says what is wrong
    const value = arg === name ? argv[++i] : arg.slice(name.length + 1)
    if (value === undefined || value === '' || value.startsWith('-')) return false
    values[name] = value
  }
  if (json && process.stdout.isTTY) return false
  showNotices()
  let store: StoreBackend | undefined
  try {
    const {spec, keyFile, ignored} = resolveStore({store: values['--store'], keyFile: values['--key-file']})
    warnIgnored(ignored)
    store = await openStore(spec, {keyFile})
    if (!store.summary) return false // a backend without a cheap summary: the oclif command reads it whole
    const summary = await store.summary()
    process.stdout.write(json ? `${JSON.stringify(statusResult(summary), null, 2)}\n` : `${statusLines(summary).join('\n')}\n`)
  } catch (error) {
    const report = describeError(error as Error)
    process.exitCode = report.exit
    if (json) process.stdout.write(`${JSON.stringify(report.json, null, 2)}\n`)
    else process.stderr.write(report.text)
  } finally {
    await store?.close()
  }
  return true
}
