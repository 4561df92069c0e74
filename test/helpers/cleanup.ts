// Temporary directories the helpers make, removed when the test file ends (test/setup.ts), even
// when a test failed before its own clean-up ran. A test that removes its directory itself may.
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

const made = new Set<string>()

/** A new private directory under the system's temporary directory, removed at the end of the file. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  made.add(dir)
  return dir
}

/** Removes every directory tempDir made (test/setup.ts runs it after each test file). */
export function removeTempDirs(): void {
  for (const dir of made) rmSync(dir, {recursive: true, force: true})
  made.clear()
}
