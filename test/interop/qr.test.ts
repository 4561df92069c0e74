// Interop: the QR codes tfactl prints or writes must scan with a real decoder
// (zbar), on both dark and light terminal themes.
import {existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import QRCode from 'qrcode'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {renderQr, writeQrPng, writeQrSvg, type QrMode} from '../../src/ui/qr.js'
import {decodeQrImage, terminalTextToPng, type Theme} from '../helpers/term-image.js'

const URIS: Record<string, string> = {
  'a basic URI': 'otpauth://totp/tfactl:alice@host?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=tfactl',
  'a long URL-encoded issuer':
    'otpauth://totp/ACME%20Corporation%20Production%20Cluster:bob@build-server-01.example.com' +
    '?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME%20Corporation%20Production%20Cluster',
  '8 digits and a 60 s period': 'otpauth://totp/tfactl:carol@host?secret=KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU&issuer=tfactl&digits=8&period=60',
}
const BASIC = URIS['a basic URI']
const MODES: QrMode[] = ['terminal', 'small']
const THEMES: Theme[] = ['dark', 'light']

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tfactl-qr-'))
})
afterEach(() => {
  rmSync(dir, {recursive: true, force: true})
})

/** Render terminal text as a camera would see it on `theme`, and decode it. */
function scanTerminal(text: string, theme: Theme): string[] {
  const png = join(dir, `screen-${theme}.png`)
  terminalTextToPng(text, theme, png)
  return decodeQrImage(png)
}

describe('renderQr scans with zbar', () => {
  for (const mode of MODES) {
    for (const theme of THEMES) {
      for (const [label, uri] of Object.entries(URIS)) {
        it(`${mode} mode decodes on a ${theme} theme (${label})`, async () => {
          expect(scanTerminal(await renderQr(uri, mode), theme)).toEqual([uri])
        })
      }
    }
  }
})

describe('renderQr output shape', () => {
  for (const mode of MODES) {
    it(`${mode} mode colours every line explicitly and resets at each line end`, async () => {
      const text = await renderQr(BASIC, mode)
      expect(text.endsWith('\n')).toBe(true)
      for (const line of text.slice(0, -1).split('\n')) {
        expect(line.startsWith('\x1b[')).toBe(true)
        expect(line.endsWith('\x1b[0m')).toBe(true)
      }
    })
  }

  it('small mode uses half as many lines as terminal mode, rounded up', async () => {
    const lines = async (mode: QrMode) => (await renderQr(BASIC, mode)).split('\n').length - 1
    const size = QRCode.create(BASIC, {errorCorrectionLevel: 'M'}).modules.size + 8
    expect(await lines('terminal')).toBe(size)
    expect(await lines('small')).toBe(Math.ceil(size / 2))
  })
})

describe('QR files', () => {
  it('writeQrPng writes an owner-only PNG that decodes to the URI', async () => {
    const path = join(dir, 'code.png')
    await writeQrPng(BASIC, path)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(decodeQrImage(path)).toEqual([BASIC])
  })

  it('writeQrPng tightens an existing world-readable file to 0600', async () => {
    const path = join(dir, 'code.png')
    writeFileSync(path, 'old', {mode: 0o644})
    await writeQrPng(BASIC, path)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(decodeQrImage(path)).toEqual([BASIC])
  })

  it('writeQrSvg writes an owner-only SVG', async () => {
    const path = join(dir, 'code.svg')
    await writeQrSvg(BASIC, path)
    expect(existsSync(path)).toBe(true)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(readFileSync(path, 'utf8')).toContain('<svg')
  })
})

describe('negative control: the harness can fail', () => {
  /** The same matrix drawn the naive way: '██' for dark modules, theme default colours. */
  function uncolouredQr(text: string): string {
    const {modules} = QRCode.create(text, {errorCorrectionLevel: 'M'})
    const lines: string[] = []
    for (let row = -4; row < modules.size + 4; row++) {
      let line = ''
      for (let col = -4; col < modules.size + 4; col++) {
        const inside = row >= 0 && col >= 0 && row < modules.size && col < modules.size
        line += inside && modules.get(row, col) === 1 ? '██' : '  '
      }
      lines.push(line)
    }
    return lines.join('\n') + '\n'
  }

  it('an uncoloured code comes out inverted on a dark theme and does not decode', () => {
    expect(scanTerminal(uncolouredQr(BASIC), 'dark')).toEqual([])
  })

  it('the same uncoloured code decodes on a light theme, so inversion is the cause', () => {
    expect(scanTerminal(uncolouredQr(BASIC), 'light')).toEqual([BASIC])
  })
})
