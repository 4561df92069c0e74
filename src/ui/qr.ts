import {open} from 'node:fs/promises'
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

/** Write `data` readable by the owner only, tightening an existing file before writing. */
async function writePrivate(path: string, data: string | Buffer): Promise<void> {
  const file = await open(path, 'w', 0o600)
  try {
    await file.chmod(0o600)
    await file.writeFile(data)
  } finally {
    await file.close()
  }
}

export async function writeQrPng(text: string, path: string): Promise<void> {
  const png = await QRCode.toBuffer(text, {type: 'png', errorCorrectionLevel: EC_LEVEL, margin: QUIET_ZONE})
  await writePrivate(path, png)
}

export async function writeQrSvg(text: string, path: string): Promise<void> {
  const svg = await QRCode.toString(text, {type: 'svg', errorCorrectionLevel: EC_LEVEL, margin: QUIET_ZONE})
  await writePrivate(path, svg)
}
