// Interop: the QR code the CLI prints, as a phone camera sees it on a dark and on a
// light terminal, decodes with zbar to exactly the URI printed beside it.
import {hostname} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {tempStore} from '../helpers/cli.js'
import {decodeQrImage, terminalTextToPng, type Theme} from '../helpers/term-image.js'
import {enable, type TempStore} from '../cli/support.js'

const MODES = ['terminal', 'small'] as const
const THEMES: Theme[] = ['dark', 'light']

let store: TempStore
beforeEach(() => {
  store = tempStore()
})
afterEach(() => {
  store.cleanup()
})

/** The URI from the `uri:` line of human output. */
function uriLine(stdout: string): string {
  const lines = stdout.split('\n').filter((l) => /^uri:\s/.test(l))
  expect(lines, stdout).toHaveLength(1)
  return lines[0].replace(/^uri:\s+/, '')
}

/** Renders the whole captured stdout on `theme` and decodes every symbol in it. */
function scan(stdout: string, theme: Theme): string[] {
  const png = join(store.dir, `screen-${theme}.png`)
  terminalTextToPng(stdout, theme, png)
  return decodeQrImage(png)
}

/** The shape user:secret:renew --json documents for a URI. */
function uriShape(user: string, issuer: string, extra = ''): RegExp {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const label = `${esc(encodeURIComponent(issuer))}:${esc(user)}(@|%40)${esc(hostname())}`
  return new RegExp(`^otpauth://totp/${label}\\?secret=[A-Z2-7]{32}&issuer=${esc(encodeURIComponent(issuer))}${esc(extra)}$`)
}

describe('QR codes printed by the CLI decode to the printed URI', () => {
  for (const mode of MODES) {
    it(`user:secret:renew --qr ${mode} decodes on dark and light themes`, async () => {
      const r = await store.run(['user:secret:renew', 'alice', '--qr', mode])
      expect(r.code, r.stderr).toBe(0)
      const uri = uriLine(r.stdout)
      expect(uri).toMatch(uriShape('alice', 'tfactl'))
      for (const theme of THEMES) expect(scan(r.stdout, theme), `${mode} on ${theme}`).toEqual([uri])

      // The same secret, as JSON: the URI printed is the URI stored.
      const shown = await store.run(['user:secret:show', 'alice', '--json'])
      expect(shown.code, shown.stderr).toBe(0)
      expect(shown.json.uri).toBe(uri)
    })

    it(`user:secret:show --qr ${mode} decodes to the same URI as the renewal`, async () => {
      const renewed = await store.run(['user:secret:renew', 'alice', '--qr', 'none', '--json'])
      expect(renewed.code, renewed.stderr).toBe(0)
      const {uri} = renewed.json.users[0]
      const r = await store.run(['user:secret:show', 'alice', '--qr', mode])
      expect(r.code, r.stderr).toBe(0)
      expect(uriLine(r.stdout)).toBe(uri)
      for (const theme of THEMES) expect(scan(r.stdout, theme), `${mode} on ${theme}`).toEqual([uri])
    })
  }

  it('encodes an issuer with a space, 8 digits and a 60 s period in what it prints and draws', async () => {
    await enable(store, '--issuer', 'NAS office')
    const r = await store.run(['user:secret:renew', 'bob', '--qr', 'small', '--interval', '60', '--digits', '8'])
    expect(r.code, r.stderr).toBe(0)
    const uri = uriLine(r.stdout)
    expect(uri).toMatch(uriShape('bob', 'NAS office', '&digits=8&period=60'))
    for (const theme of THEMES) expect(scan(r.stdout, theme), theme).toEqual([uri])
  })

  it('prints the key in groups of four that spell the secret of the URI', async () => {
    const r = await store.run(['user:secret:renew', 'alice', '--qr', 'none'])
    expect(r.code, r.stderr).toBe(0)
    const secret = new URL(uriLine(r.stdout)).searchParams.get('secret')!
    const key = r.stdout
      .split('\n')
      .find((l) => /^key:\s/.test(l))!
      .replace(/^key:\s+/, '')
    expect(key).toMatch(/^([A-Z2-7]{4} ){7}[A-Z2-7]{4}$/)
    expect(key.replaceAll(' ', '')).toBe(secret)
  })
})
