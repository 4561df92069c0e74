import {usageError} from './core/errors.js'

/** Longer than any code tfactl accepts (8 digits, recovery and bypass codes), with room for spaces. */
const MAX_LINE = 256

/**
 * `--code -`: the code is the first line of stdin, so that it never shows in /proc/PID/cmdline
 * where any local user can read it. Shared by the oclif commands and the login fast path (no
 * oclif here). A terminal is refused: leaving --code out asks for the code there, hidden.
 */
export async function readCodeLine(stdin: NodeJS.ReadStream = process.stdin): Promise<string> {
  if (stdin.isTTY) throw usageError('--code - reads the code from a pipe; on a terminal leave --code out and you will be asked (hidden)')
  let text = ''
  for await (const chunk of stdin) {
    text += (chunk as Buffer).toString('utf8')
    if (text.includes('\n') || text.length > MAX_LINE) break
  }
  const line = text.split('\n')[0].replace(/\r$/, '').trim()
  if (line === '') throw usageError('--code -: stdin held no code (give one line, e.g. printf "%s\\n" "$CODE" | tfactl …)')
  if (line.length > MAX_LINE) throw usageError('--code -: the first line of stdin is too long to be a code')
  return line
}

/** `--code -` given `count` times: that many lines of stdin, one code each, in order. */
export async function readCodeLines(count: number, stdin: NodeJS.ReadStream = process.stdin): Promise<string[]> {
  if (count === 0) return []
  if (stdin.isTTY) throw usageError('--code - reads codes from a pipe, one per line')
  let text = ''
  for await (const chunk of stdin) {
    text += (chunk as Buffer).toString('utf8')
    if (text.split('\n').length > count || text.length > MAX_LINE * count) break
  }
  const lines = text
    .split('\n')
    .slice(0, count)
    .map((l) => l.replace(/\r$/, '').trim())
  if (lines.length < count || lines.some((l) => l === '')) throw usageError(`--code -: stdin held fewer than ${count} codes (one per line)`)
  if (lines.some((l) => l.length > MAX_LINE)) throw usageError('--code -: a line of stdin is too long to be a code')
  return lines
}
