import {EXIT, TfaError} from '../core/errors.js'
import {errorPrefix} from './colour.js'

const isSystemError = (error: unknown): boolean => typeof (error as NodeJS.ErrnoException).errno === 'number'

/** A multi-line message as one line: a line ending in ":" runs on into the next, others join with "; ". */
function oneLine(message: string): string {
  return message
    .replace(/\x1b\[[0-9;]*m/g, '')
    .split('\n')
    .map((l) => l.trim().replace(/\s{2,}/g, ' '))
    .filter(Boolean)
    .reduce((line, next) => (line === '' ? next : line.endsWith(':') ? `${line} ${next}` : `${line}; ${next}`), '')
}

/** oclif's "Missing 1 required arg:" and its list, as tfactl words it: which argument, what it is. */
function missingArgs(error: Error): string | null {
  const args = (error as {args?: {name?: string; description?: string}[]}).args
  if (!Array.isArray(args) || !/^Missing \d+ required arg/.test(error.message)) return null
  const named = args.map((a) => (a.description ? `${a.name} (${a.description})` : a.name)).join(', ')
  return `missing ${args.length === 1 ? 'argument' : 'arguments'}: ${named}; see --help`
}

/**
 * A system error that reaches the top (an open or mkdir the store module did not wrap) as one
 * plain line with its documented exit code: no permission is "forbidden" (4), like everywhere
 * else, never a raw `EACCES: permission denied, open '…'` with exit 3.
 */
function plainSystemError(error: Error): Error {
  const e = error as NodeJS.ErrnoException
  if (!isSystemError(e) || error instanceof TfaError) return error
  const where = e.path ?? 'a file of the store'
  if (e.code === 'EACCES' || e.code === 'EPERM') return new TfaError(`permission denied: ${where} (run as its owner or with sudo)`, EXIT.forbidden, 'forbidden')
  if (e.code === 'ELOOP') return new TfaError(`${where} is a symbolic link; tfactl never writes through a link there: remove it`, EXIT.store, 'store')
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return new TfaError(`no space left to write ${where}: free some space and try again`, EXIT.store, 'store')
  return error
}

/**
 * Any failure as the user sees it: its documented exit code, one line of text, and the JSON
 * error object. oclif's own parse errors carry their exit code (2) in `oclif.exit`.
 */
export function describeError(thrown: Error) {
  const error = plainSystemError(thrown)
  const known = error instanceof TfaError
  const oclifExit = (error as {oclif?: {exit?: number}}).oclif?.exit
  const exit = known ? error.exit : (oclifExit ?? (isSystemError(error) ? EXIT.store : 1))
  const message = missingArgs(error) ?? oneLine(error.message || String(error))
  const code = known ? error.code : exit === EXIT.usage ? 'usage' : 'error'
  return {exit, message, json: {error: {message, code, exit}}, text: `${errorPrefix()} ${message}\n`}
}
