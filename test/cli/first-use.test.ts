// What a new user meets first: a mistyped command, a missing argument, the help text, doctor on a
// new store, a store whose key is gone. Each answer names the way on, on one line.
import {readFileSync, renameSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {ROOT, tempStore, tfactl} from '../helpers/cli.js'
import {enable, expectJsonError, renew, type TempStore} from './support.js'

const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8'))

describe('a mistyped command', () => {
  it('gets the nearest command named, on one line, exit 2', async () => {
    const r = await tfactl(['twofactor:enabel'])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('tfactl: twofactor:enabel is not a tfactl command; did you mean twofactor:enable? (tfactl --help lists them)\n')
  })

  it('names the command a bare last part belongs to, and answers JSON under --json', async () => {
    const r = await tfactl(['unlock', 'alice', '--json'])
    expect(expectJsonError(r, 2)).toMatch(/did you mean user:unlock\?/)
  })

  it('suggests nothing for a word far from every command', async () => {
    const r = await tfactl(['frobnicate'])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('tfactl: frobnicate is not a tfactl command (tfactl --help lists them)\n')
  })
})

describe('usage errors', () => {
  it('a missing argument is named with what it is', async () => {
    const r = await tfactl(['user:bypass'])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('tfactl: missing argument: username (user to let in); see --help\n')
  })

  it('help wraps descriptions to the terminal, never where the source was wrapped', async () => {
    const width = 120
    // what oclif help reads: one line per paragraph or list item, in every command
    for (const [id, command] of Object.entries<any>(manifest.commands))
      for (const paragraph of String(command.description ?? '').split('\n\n'))
        for (const line of paragraph.split('\n').slice(1)) expect(line, `${id}: a line break inside a paragraph`).toMatch(/^- /)
    // and help, at a width the source's wrapping does not match, for the longest descriptions
    for (const id of ['twofactor:disable', 'ssh:sync', 'radius:serve', 'store:migrate']) {
      const help = (await tfactl([id, '--help'], {env: {OCLIF_COLUMNS: String(width)}})).stdout
      const start = help.indexOf('\nDESCRIPTION\n')
      if (start < 0) continue // a one-line description: nothing to wrap
      const end = help.indexOf('\nEXAMPLES\n')
      const description = help.slice(start + '\nDESCRIPTION\n'.length, end > start ? end : undefined)
      const lines = description.split('\n')
      for (let i = 0; i < lines.length - 1; i++) {
        const next = lines[i + 1].trim()
        if (!lines[i].trim() || !next || next.startsWith('- ')) continue // a paragraph's or a list item's end
        // a line was broken only if the next word would not have fitted on it
        expect(lines[i].length + 1 + next.split(' ')[0].length, `${id}: "${lines[i].trim()}"`).toBeGreaterThan(width - 4)
      }
    }
  })
})

describe('doctor and errors on a store without its key', () => {
  let s: TempStore
  afterEach(() => s.cleanup())

  it('doctor does not call a key private that does not exist', async () => {
    s = tempStore()
    await enable(s)
    const r = await s.run(['doctor', '--json'])
    const store = r.json.checks.find((c: any) => c.check === 'store')
    expect(store).toMatchObject({status: 'ok', message: `${s.path} is private (0600); it has no key file (the first secret creates ${s.path}.key)`})
  })

  it('a missing key file says to put it back or turn 2FA off, not to restore .bak (sealed with the same key)', async () => {
    s = tempStore()
    await enable(s)
    await renew(s, 'alice')
    await renew(s, 'bob') // a .bak exists now
    renameSync(`${s.path}.key`, join(s.dir, 'elsewhere'))
    for (const args of [
      ['user:list', '--json'],
      ['login:check', 'alice', '--code', '123456', '--json'],
    ]) {
      const message = expectJsonError(await s.run(args), 3)
      expect(message).toMatch(/key file .* is missing or is not the key .*: put that key file back, or turn 2FA off without it with tfactl twofactor:disable$/)
      expect(message).not.toContain('.bak')
    }
  })
})
