// The lock primitive under both of tfactl's locks (src/os/oslock.ts): open file description
// (OFD) locks from fs-native-extensions' prebuilt addon. They must be what the kernel calls OFD
// locks (held per open file, so even a second descriptor in the same process is refused), and
// they must conflict with the classic POSIX fcntl lock that pam_oath takes on its `.lock` file.
import {spawn} from 'node:child_process'
import {closeSync, mkdtempSync, openSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {tryLockExclusive, waitLockExclusive} from '../../src/os/oslock.js'

const dir = mkdtempSync(join(tmpdir(), 'tfactl-oslock-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

// A classic POSIX write lock on the whole file, as liboath takes it (liboath waits, F_SETLKW; here F_SETLK, F_WRLCK,
// SEEK_SET, 0, 0, so a refusal shows at once). perl (perl-base is in every Debian) packs `struct flock`
// for 64-bit Linux.
const POSIX_LOCK = `use Fcntl qw(F_SETLK F_WRLCK SEEK_SET);
open(my $f, '>>', $ARGV[0]) or die "open: $!";
my $lock = pack('s s x4 q q i x4', F_WRLCK, SEEK_SET, 0, 0, 0); # fcntl writes into it
fcntl($f, F_SETLK, $lock) or do { print "refused\\n"; exit 1 };
$| = 1; print "held\\n"; sleep $ARGV[1];`

/** Runs perl trying a POSIX lock on `path` and holding it `seconds`; `said` is held or refused. */
function posixLock(path: string, seconds: number) {
  const child = spawn('perl', ['-e', POSIX_LOCK, path, String(seconds)], {stdio: ['ignore', 'pipe', 'inherit']})
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const said = new Promise<string>((resolve) => {
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      if (out.includes('\n')) resolve(out.trim())
    })
    child.on('exit', () => resolve(out.trim()))
  })
  return {said, exited}
}

describe('OFD locks (src/os/oslock.ts)', () => {
  it('refuses a second open of the file, even in the same process, until the first is closed', () => {
    const path = join(dir, 'a.lock')
    const first = openSync(path, 'a')
    const second = openSync(path, 'a')
    try {
      expect(tryLockExclusive(first)).toBe(true)
      expect(tryLockExclusive(second)).toBe(false) // a classic POSIX lock would be granted here
      closeSync(first)
      expect(tryLockExclusive(second)).toBe(true)
    } finally {
      closeSync(second)
    }
  })

  it("conflicts with pam_oath's classic POSIX fcntl lock, both ways", async () => {
    const path = join(dir, 'b.lock')
    // pam_oath holds: tfactl is refused, and waits until it lets go.
    const holder = posixLock(path, 1)
    expect(await holder.said).toBe('held')
    const fd = openSync(path, 'a')
    try {
      expect(tryLockExclusive(fd)).toBe(false)
      const started = Date.now()
      await waitLockExclusive(fd)
      expect(Date.now() - started).toBeGreaterThan(300)
      expect(await holder.exited).toBe(0)
      // tfactl holds: pam_oath is refused.
      const other = posixLock(path, 0)
      expect(await other.said).toBe('refused')
      expect(await other.exited).toBe(1)
    } finally {
      closeSync(fd)
    }
    const after = posixLock(path, 0)
    expect(await after.said).toBe('held')
  })
})
