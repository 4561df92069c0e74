// The one note a store error gets about the backup (src/store/file/store.ts withBackupNote): it
// names a valid backup and how to put it back, and never replaces the error it annotates.
import {mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {storeError, usageError} from '../../src/core/errors.js'
import {withBackupNote} from '../../src/store/file/store.js'

const dir = mkdtempSync(join(tmpdir(), 'tfactl-backup-note-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

describe('withBackupNote', () => {
  it('names a private backup and the commands that use it', () => {
    const backup = join(dir, 'store.json.bak')
    writeFileSync(backup, '{}', {mode: 0o600})
    const error = withBackupNote(storeError('store.json: not valid JSON'), backup) as Error
    expect(error.message).toBe(
      `store.json: not valid JSON (the previous valid store is kept in ${backup}: put it back with tfactl store:restore, or get 2FA off anyway with tfactl twofactor:disable --force)`,
    )
  })

  it('says nothing of a backup that does not exist', () => {
    const error = storeError('store.json: not valid JSON')
    expect(withBackupNote(error, join(dir, 'none.bak'))).toBe(error)
    expect(error.message).toBe('store.json: not valid JSON')
  })

  it('keeps the original error when the backup cannot be trusted (a symbolic link)', () => {
    const target = join(dir, 'elsewhere')
    writeFileSync(target, '{}', {mode: 0o600})
    const link = join(dir, 'link.bak')
    symlinkSync(target, link)
    const error = storeError('store.json: not valid JSON')
    expect(withBackupNote(error, link)).toBe(error)
    expect(error.message).toBe('store.json: not valid JSON')
  })

  it('leaves errors other than a bad store alone', () => {
    const backup = join(dir, 'store.json.bak')
    const error = usageError('bad flag')
    expect(withBackupNote(error, backup)).toBe(error)
    expect(error.message).toBe('bad flag')
  })
})
