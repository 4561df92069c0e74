// Test helper: emulate how a phone camera sees a terminal. Text with ANSI SGR
// colour codes is rasterised with a realistic terminal palette, then scanned
// with the real zbar decoder.
import {execFileSync} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import {PNG} from 'pngjs'

type Rgb = [number, number, number]
export type Theme = 'dark' | 'light'

const CELL_W = 8
const CELL_H = 16
const MARGIN = 20

const THEMES: Record<Theme, {fg: Rgb; bg: Rgb}> = {
  dark: {fg: hex('#d0d0d0'), bg: hex('#1e1e1e')},
  light: {fg: hex('#202020'), bg: hex('#ffffff')},
}

// GNOME/Tango palette: like most real themes, "black" and "white" are greys.
const ANSI16: Rgb[] = [
  '#2e3436',
  '#cc0000',
  '#4e9a06',
  '#c4a000',
  '#3465a4',
  '#75507b',
  '#06989a',
  '#d3d7cf',
  '#555753',
  '#ef2929',
  '#8ae234',
  '#fce94f',
  '#729fcf',
  '#ad7fa8',
  '#34e2e2',
  '#eeeeec',
].map(hex)

function hex(value: string): Rgb {
  const n = Number.parseInt(value.slice(1), 16)
  return [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]
}

function xterm256(n: number): Rgb {
  if (n < 16) return ANSI16[n]
  if (n >= 232) {
    const grey = 8 + 10 * (n - 232)
    return [grey, grey, grey]
  }
  const levels = [0, 95, 135, 175, 215, 255]
  const i = n - 16
  return [levels[Math.floor(i / 36)], levels[Math.floor(i / 6) % 6], levels[i % 6]]
}

interface Pen {
  fg: Rgb
  bg: Rgb
  reverse: boolean
}

interface Cell {
  ch: string
  fg: Rgb
  bg: Rgb
}

/** Consume an extended colour (5;n or 2;r;g;b) starting at params[i]; returns [colour, params used]. */
function extendedColour(params: number[], i: number): [Rgb | undefined, number] {
  if (params[i] === 5) return [xterm256(params[i + 1] ?? 0), 2]
  if (params[i] === 2) return [[params[i + 1] ?? 0, params[i + 2] ?? 0, params[i + 3] ?? 0], 4]
  return [undefined, 0]
}

function applySgr(pen: Pen, params: number[], theme: Theme): void {
  const defaults = THEMES[theme]
  for (let i = 0; i < params.length; i++) {
    const p = params[i]
    if (p === 0) Object.assign(pen, {fg: defaults.fg, bg: defaults.bg, reverse: false})
    else if (p === 7) pen.reverse = true
    else if (p === 27) pen.reverse = false
    else if (p >= 30 && p <= 37) pen.fg = ANSI16[p - 30]
    else if (p >= 90 && p <= 97) pen.fg = ANSI16[p - 90 + 8]
    else if (p === 39) pen.fg = defaults.fg
    else if (p >= 40 && p <= 47) pen.bg = ANSI16[p - 40]
    else if (p >= 100 && p <= 107) pen.bg = ANSI16[p - 100 + 8]
    else if (p === 49) pen.bg = defaults.bg
    else if (p === 38 || p === 48) {
      const [colour, used] = extendedColour(params, i + 1)
      if (colour) pen[p === 38 ? 'fg' : 'bg'] = colour
      i += used
    }
  }
}

function parseLine(line: string, pen: Pen, theme: Theme): Cell[] {
  const cells: Cell[] = []
  const pattern = /\x1b\[([0-9;]*)m|([^\x1b])/gu
  for (const match of line.matchAll(pattern)) {
    if (match[2] === undefined) {
      const params = match[1] === '' ? [0] : match[1].split(';').map((s) => Number(s || '0'))
      applySgr(pen, params, theme)
      continue
    }
    const [fg, bg] = pen.reverse ? [pen.bg, pen.fg] : [pen.fg, pen.bg]
    cells.push({ch: match[2], fg, bg})
  }
  return cells
}

/** Colour of pixel (x, y) inside a cell, for the block characters a QR renderer uses. */
function cellPixel(cell: Cell, y: number): Rgb {
  const top = y < CELL_H / 2
  switch (cell.ch) {
    case '█':
      return cell.fg
    case '▀':
      return top ? cell.fg : cell.bg
    case '▄':
      return top ? cell.bg : cell.fg
    default:
      return cell.bg
  }
}

/** Rasterise ANSI-coloured terminal text (8x16 px cells, 20 px margin) to a PNG. */
export function terminalTextToPng(text: string, theme: Theme, outPath: string): void {
  const pen: Pen = {...THEMES[theme], reverse: false}
  const rows = text
    .replace(/\n$/, '')
    .split('\n')
    .map((line) => parseLine(line, pen, theme))
  const cols = Math.max(0, ...rows.map((row) => row.length))
  const png = new PNG({width: cols * CELL_W + 2 * MARGIN, height: rows.length * CELL_H + 2 * MARGIN})
  const paint = (x: number, y: number, [r, g, b]: Rgb): void => {
    const at = (png.width * y + x) * 4
    png.data[at] = r
    png.data[at + 1] = g
    png.data[at + 2] = b
    png.data[at + 3] = 255
  }
  const background = THEMES[theme].bg
  for (let y = 0; y < png.height; y++) {
    for (let x = 0; x < png.width; x++) {
      const row = rows[Math.floor((y - MARGIN) / CELL_H)]
      const cell = y >= MARGIN && x >= MARGIN ? row?.[Math.floor((x - MARGIN) / CELL_W)] : undefined
      paint(x, y, cell ? cellPixel(cell, (y - MARGIN) % CELL_H) : background)
    }
  }
  writeFileSync(outPath, PNG.sync.write(png))
}

/** Decode every barcode zbar finds in the image; [] when nothing decodes. */
export function decodeQrImage(path: string): string[] {
  try {
    // stderr is captured, not inherited: zbarimg prints D-Bus connection noise there.
    const out = execFileSync('zbarimg', ['--raw', '-q', path], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
    return out.split('\n').filter((line) => line !== '')
  } catch (error) {
    // zbarimg exits 4 when the image was read but no symbol was found.
    if ((error as {status?: number}).status === 4) return []
    throw error
  }
}
