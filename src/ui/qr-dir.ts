import * as fs from 'node:fs'
import {join} from 'node:path'
import {TfaError, usageError} from '../core/errors.js'
import {type UnsafeDir, unsafeDir} from '../os/files.js'
import {quote} from '../core/validate.js'

/**
 * `--qr-dir`: where QR images of new secrets are handed out. Each image holds a secret, so the
 * directory must be one nobody else can write: owned by the caller or root, not writable by
 * group or others, and inside directories nobody else can swap (else another user could
 * pre-create a file or plant a link and read the secret, or make root overwrite a file of their
 * choice; os/files.ts unsafeDir). Checked before anything is enrolled;
 * a problem is exit 2 and nothing changes. Returns the directory's real path (a missing
 * directory is created 0700).
 */
export function prepareQrDir(dir: string): string {
  try {
    fs.mkdirSync(dir, {recursive: true, mode: 0o700})
  } catch (error) {
    throw usageError(`--qr-dir ${quote(dir)}: cannot create it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
  }
  let real: string
  let unsafe: UnsafeDir | undefined
  try {
    real = fs.realpathSync(dir)
    if (!fs.statSync(real).isDirectory()) throw usageError(`--qr-dir ${quote(dir)} is not a directory`)
    unsafe = unsafeDir(real)
  } catch (error) {
    if (error instanceof TfaError) throw error
    throw usageError(`--qr-dir ${quote(dir)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
  if (unsafe?.own)
    throw usageError(
      `--qr-dir ${quote(dir)} ${unsafe.why}, so another user could plant files or links to read the QR codes (they hold secrets): use a private directory of your own (chmod 700)`,
    )
  if (unsafe)
    throw usageError(
      `--qr-dir ${quote(dir)} is inside ${quote(unsafe.path)}, which ${unsafe.why}, so another user could swap it to read the QR codes (they hold secrets): use a directory elsewhere`,
    )
  return real
}

/**
 * Writes one QR image as a new 0600 file: any old entry of that name is removed first (in a
 * directory only its owner can write, it is the owner's own), then the file is created with
 * O_CREAT|O_EXCL|O_NOFOLLOW, so nothing is ever written through an existing file or a link.
 */
export function writeNewPrivateFile(dir: string, name: string, data: string | Buffer): void {
  const path = join(dir, name)
  fs.rmSync(path, {force: true})
  const fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
  try {
    fs.fchmodSync(fd, 0o600) // whatever the umask
    fs.writeFileSync(fd, data)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}
