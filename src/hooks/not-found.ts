import type {Hook} from '@oclif/core'
import {usageError} from '../core/errors.js'
import {describeError} from '../ui/errors.js'

/** Edit distance (insertions, deletions, substitutions; a swap of two neighbours counts once). */
export function distance(a: string, b: string): number {
  const d = Array.from({length: a.length + 1}, (_, i) => Array.from({length: b.length + 1}, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  return d[a.length][b.length]
}

/**
 * The command a mistyped id most likely meant: the nearest by edit distance, if near enough
 * (a few typos, not a different word), or the one whose last part it is (`enable` →
 * `twofactor:enable`) when only one command ends so.
 */
export function suggest(id: string, ids: readonly string[]): string | null {
  const typed = id.toLowerCase().replaceAll(' ', ':')
  const bySuffix = ids.filter((c) => c.endsWith(`:${typed}`))
  if (bySuffix.length === 1) return bySuffix[0]
  let best: string | null = null
  let bestDistance = Number.POSITIVE_INFINITY
  for (const candidate of ids) {
    const d = distance(typed, candidate)
    if (d < bestDistance) [best, bestDistance] = [candidate, d]
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(typed.length / 4)) ? best : null
}

/**
 * oclif's "command not found", in tfactl's words: one line naming the nearest command, exit 2
 * (invalid usage), the JSON error object under --json. Never a prompt: scripts call tfactl too.
 */
const hook: Hook.CommandNotFound = async ({id, argv, config}) => {
  const ids = config.commands.filter((c) => !c.hidden).map((c) => c.id)
  const near = suggest(id, ids)
  const error = usageError(`${id} is not a ${config.bin} command${near ? `; did you mean ${near}?` : ''} (${config.bin} --help lists them)`)
  const {exit, json, text} = describeError(error)
  if (argv?.includes('--json')) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`)
  else process.stderr.write(text)
  process.exitCode = exit
}

export default hook
