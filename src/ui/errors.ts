import {EXIT, TfaError} from '../core/errors.js'
import {errorPrefix} from './colour.js'

const isSystemError = (error: unknown): boolean => typeof (error as NodeJS.ErrnoException).errno === 'number'

function oneLine(message: string): string {
  return message
    .replace(/\x1b\[[0-9;]*m/g, '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join('; ')
}

/**
 * Any failure as the user sees it: its documented exit code, one line of text, and the JSON
 * error object. oclif's own parse errors carry their exit code (2) in `oclif.exit`.
 */
export function describeError(error: Error) {
  const known = error instanceof TfaError
  const oclifExit = (error as {oclif?: {exit?: number}}).oclif?.exit
  const exit = known ? error.exit : (oclifExit ?? (isSystemError(error) ? EXIT.store : 1))
  const message = oneLine(error.message || String(error))
  const code = known ? error.code : exit === EXIT.usage ? 'usage' : 'error'
  return {exit, message, json: {error: {message, code, exit}}, text: `${errorPrefix()} ${message}\n`}
}
