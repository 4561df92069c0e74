import {usageError} from './errors.js'
import {checkUsername} from './validate.js'

/**
 * A provisioning list: one name per line, surrounding whitespace trimmed, blank lines and `#`
 * comments ignored. The whole list is checked before anything is written; the first problem is
 * reported as `FILE:LINE: reason`.
 */
export function parseUserList(text: string, file: string): string[] {
  const names: string[] = []
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const where = `${file}:${index + 1}: `
    if (/\s/.test(line)) throw usageError(`${where}a line holds one username, found whitespace inside ${JSON.stringify(line)}`)
    names.push(checkUsername(line, where))
  })
  return names
}

/** Names in order, each once. */
export const unique = (names: string[]): string[] => [...new Set(names)]
