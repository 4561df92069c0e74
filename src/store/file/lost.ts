import {existsSync} from 'node:fs'
import {storeError} from '../../core/errors.js'
import {sidecars} from '../paths.js'

/**
 * A store file that is missing while its side files are there (its key, `.bak` or journal: every
 * write of a store leaves a journal) was lost, not never made. Reading it as a new empty store
 * would mean "2FA off" for every login, STIG mode included: a store problem instead (exit 3).
 * The lock and the audit log do not count: a read-only command on a new store creates them; nor
 * does the directory's shared legacy `tfactl.key`, which another store may be using.
 */
export function checkNotLost(path: string): void {
  const files = sidecars(path)
  const present = [files.backup, files.journal, files.key].filter((f) => existsSync(f))
  if (present.length === 0) return
  const fix = existsSync(files.backup)
    ? `put the previous store back with tfactl store:restore (from ${files.backup})`
    : `restore it from your backups, or start a new store with 2FA off: tfactl twofactor:disable --force`
  throw storeError(`${path} is missing, but ${present.join(', ')} show a store existed: ${fix}`)
}
