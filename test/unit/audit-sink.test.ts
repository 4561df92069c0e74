// The file store's audit sink for a responder (src/store/file/audit-sink.ts): its descriptor is
// kept between batches while the path still names the private file it opened (one lstat a batch);
// a log moved aside is followed by a new one, and a log others could read, or a link, is refused
// (reported, nothing written), as every command refuses it.
import {chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {AuditWriter} from '../../src/store/file/audit-sink.js'

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, {recursive: true, force: true})
})

function setUp() {
  const dir = mkdtempSync(join(tmpdir(), 'tfactl-audit-'))
  dirs.push(dir)
  const path = join(dir, 'store.json.audit.log')
  const warnings: string[] = []
  const writer = new AuditWriter(path, (line) => warnings.push(line))
  const line = async (user: string) => {
    writer.record({command: 'radius:serve', user, outcome: 'allowed', reason: 'code_accepted', client: '127.0.0.1'})
    await writer.drain()
  }
  return {dir, path, warnings, writer, line}
}

const users = (text: string) =>
  text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l).user)

describe('the responder’s audit log (file store)', () => {
  it('keeps writing to the file it opened; a log moved aside is followed by a new one', async () => {
    const {path, warnings, writer, line} = setUp()
    writer.record({command: 'radius:serve', user: 'a', outcome: 'allowed', reason: 'code_accepted', client: '127.0.0.1'})
    writer.record({command: 'radius:serve', user: 'b', outcome: 'denied', reason: 'code_invalid', client: '127.0.0.1'})
    await writer.drain()
    await line('c')
    expect(users(readFileSync(path, 'utf8'))).toEqual(['a', 'b', 'c'])
    renameSync(path, `${path}.1`) // as logrotate does
    await line('d')
    expect(users(readFileSync(`${path}.1`, 'utf8'))).toEqual(['a', 'b', 'c'])
    expect(users(readFileSync(path, 'utf8'))).toEqual(['d'])
    expect(warnings).toEqual([])
  })

  it('refuses a log made readable by others or swapped for a link: reported, nothing written; fixed, it writes again', async () => {
    const {dir, path, warnings, line} = setUp()
    await line('a')
    chmodSync(path, 0o644)
    await line('b')
    expect(warnings.join('\n')).toMatch(/chmod 600/)
    expect(users(readFileSync(path, 'utf8'))).toEqual(['a'])
    chmodSync(path, 0o600)
    await line('c')
    expect(users(readFileSync(path, 'utf8'))).toEqual(['a', 'c'])

    const elsewhere = join(dir, 'elsewhere.log')
    writeFileSync(elsewhere, '', {mode: 0o600})
    renameSync(path, `${path}.1`)
    symlinkSync(elsewhere, path)
    await line('d') // a link: refused (the warning itself is rate-limited to one a minute)
    expect(readFileSync(elsewhere, 'utf8')).toBe('')
    expect(users(readFileSync(`${path}.1`, 'utf8'))).toEqual(['a', 'c'])
  })
})
