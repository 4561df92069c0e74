import {styleText} from 'node:util'

/**
 * Colour for the words a person scans (allowed/denied, warnings, errors, doctor's findings,
 * LOCKED OUT). Only on a terminal: never when the stream is piped or redirected, never under
 * NO_COLOR (no-color.org: set and not empty) or TERM=dumb, and never in --json (callers colour
 * human lines only). Node's own checks (stream.getColorDepth: FORCE_COLOR=0,
 * NODE_DISABLE_COLORS) are honoured too.
 *
 * util.styleText does these checks itself when given {stream}, but Node 20.20 skips them when
 * the format is an array (measured: TERM=dumb still got bold red); so the decision is made
 * here and styleText only renders. No dependency: this runs on the login fast path.
 */
export type Colour = 'red' | 'green' | 'yellow'

export function colourOn(stream: NodeJS.WriteStream = process.stdout): boolean {
  if (!stream.isTTY) return false
  if (process.env.NO_COLOR) return false
  if (process.env.TERM === 'dumb') return false
  return typeof stream.getColorDepth === 'function' ? stream.getColorDepth() > 2 : true
}

/** `text` in `colour` when `stream` is a terminal that takes colour, else `text` unchanged. */
export function paint(colour: Colour, text: string, stream: NodeJS.WriteStream = process.stdout): string {
  return colourOn(stream) ? styleText(colour, text, {validateStream: false}) : text
}

/** The prefix of every warning on stderr. */
export const warningPrefix = (): string => paint('yellow', 'tfactl: warning:', process.stderr)

/** The prefix of every error on stderr. */
export const errorPrefix = (): string => paint('red', 'tfactl:', process.stderr)
