import {execFileSync} from 'node:child_process'
import {usageError} from '../core/errors.js'

/** The output of `getent DATABASE [KEY]`, run without a shell; undefined when the key is not found (exit 2). */
function getent(args: string[]): string | undefined {
  try {
    return execFileSync('getent', args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000, maxBuffer: 256 << 20})
  } catch (error) {
    const e = error as {status?: number; code?: string}
    if (e.status === 2) return undefined
    throw usageError(`cannot ask NSS (getent ${args[0]}): ${e.code ?? `exit ${e.status}`}`)
  }
}

/**
 * NSS as `getent` answers (files, LDAP, SSSD, winbind alike): a group's line by name (the name
 * checked by the caller; `--` ends the options anyway), and every passwd line NSS enumerates.
 */
export const nss = {
  group: (name: string): string | undefined => getent(['group', '--', name])?.split('\n')[0],
  passwd: (): string => getent(['passwd']) ?? '',
}
