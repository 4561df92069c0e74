// Shell completion through the npm-installed CLI: `tfactl autocomplete bash|zsh` prints the setup
// and writes the completion functions into oclif's cache directory (here a private one).
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {tfactl} from '../helpers/cli.js'

const cache = mkdtempSync(join(tmpdir(), 'tfactl-autocomplete-'))
afterAll(() => rmSync(cache, {recursive: true, force: true}))

describe('autocomplete', () => {
  it.each(['bash', 'zsh'])('prints the %s setup and writes its completion function', async (shell) => {
    const r = await tfactl(['autocomplete', shell], {env: {TFACTL_CACHE_DIR: cache}})
    expect(r.stderr).not.toMatch(/ERR_|Error/)
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`tfactl autocomplete:script ${shell}`)
    const fn = readFileSync(join(cache, 'autocomplete', 'functions', shell, shell === 'bash' ? 'tfactl.bash' : '_tfactl'), 'utf8')
    expect(fn).toContain('user:secret:renew')
    expect(fn).toContain('--code')
  })

  it('prints the instructions for the current shell with no argument', async () => {
    const r = await tfactl(['autocomplete'], {env: {TFACTL_CACHE_DIR: cache, SHELL: '/bin/bash'}})
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain('tfactl autocomplete:script bash')
  })
})
