import {basename, dirname} from 'node:path'
import {writeNewPrivateFile} from './qr-dir.js'
import QRCode from 'qrcode'

export type QrMode = 'terminal' | 'small'

const QUIET_ZONE = 4
const EC_LEVEL = 'M'

// Why explicit colours for BOTH dark and light modules: a QR reader needs dark
// modules on a light background. Renderers that only paint the dark modules
// (or only use the terminal's default colours, like qrcode-terminal's small
// mode) come out inverted on a dark theme, and many phone scanners will not
// read inverted codes. Painting every cell black-on-white makes the code look
// the same on dark and light themes. Bright white (97/107) is used for the
// light modules because many themes map plain "white" (37/47) to light grey.
const DARK_BG = '\x1b[40m'
const LIGHT_BG = '\x1b[107m'
const DARK_ON_LIGHT = '\x1b[30;107m'
const RESET = '\x1b[0m'

/** The module matrix with the quiet zone added; true = dark module. */
function paddedMatrix(text: string): boolean[][] {
  const {modules} = QRCode.create(text, {errorCorrectionLevel: EC_LEVEL})
  const size = modules.size + 2 * QUIET_ZONE
  const isDark = (row: number, col: number): boolean => {
    const r = row - QUIET_ZONE
    const c = col - QUIET_ZONE
    const inside = r >= 0 && c >= 0 && r < modules.size && c < modules.size
    return inside && modules.get(r, c) === 1
  }
  return Array.from({length: size}, (_, row) => Array.from({length: size}, (_, col) => isDark(row, col)))
}

/** One module = two background-coloured spaces; colour codes only where it changes. */
function terminalLine(row: boolean[]): string {
  let line = ''
  let current: boolean | undefined
  for (const dark of row) {
    if (dark !== current) line += dark ? DARK_BG : LIGHT_BG
    current = dark
    line += '  '
  }
  return line + RESET
}

/** Two module rows per line: foreground paints the dark halves, background the light ones. */
function halfBlockLine(top: boolean[], bottom: boolean[] | undefined): string {
  const cells = top.map((upper, col) => {
    const lower = bottom?.[col] ?? false
    if (upper && lower) return '█'
    if (upper) return '▀'
    if (lower) return '▄'
    return ' '
  })
  return DARK_ON_LIGHT + cells.join('') + RESET
}

function renderLines(matrix: boolean[][], mode: QrMode): string[] {
  if (mode === 'terminal') return matrix.map(terminalLine)
  const lines: string[] = []
  for (let row = 0; row < matrix.length; row += 2) {
    lines.push(halfBlockLine(matrix[row], matrix[row + 1]))
  }
  return lines
}

/** Render `text` as a QR code for a terminal (EC level M, 4-module quiet zone). */
export async function renderQr(text: string, mode: QrMode): Promise<string> {
  return renderLines(paddedMatrix(text), mode).join('\n') + '\n'
}

/** The QR code as a PNG image, to be written with writeNewPrivateFile (src/ui/qr-dir.ts). */
export async function qrPng(text: string): Promise<Buffer> {
  return QRCode.toBuffer(text, {type: 'png', errorCorrectionLevel: EC_LEVEL, margin: QUIET_ZONE})
}

/** The QR code as an SVG image. */
export async function qrSvg(text: string): Promise<string> {
  return QRCode.toString(text, {type: 'svg', errorCorrectionLevel: EC_LEVEL, margin: QUIET_ZONE})
}

/** Writes a new 0600 PNG file at `path` (see writeNewPrivateFile: never through a file or link). */
export async function writeQrPng(text: string, path: string): Promise<void> {
  writeNewPrivateFile(dirname(path), basename(path), await qrPng(text))
}

export async function writeQrSvg(text: string, path: string): Promise<void> {
  writeNewPrivateFile(dirname(path), basename(path), await qrSvg(text))
}
