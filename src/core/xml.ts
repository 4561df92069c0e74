/**
 * A small, strict XML reader for the few documents tfactl reads (PSKC, RFC 6030): elements,
 * attributes, text, CDATA, comments and processing instructions, with namespaces resolved.
 * A DOCTYPE is refused (no entity declarations, so no entity expansion), as is anything
 * malformed; errors name the line. Not a general XML parser: no DTDs, no external anything.
 */

export interface XmlElement {
  /** The local name (without prefix). */
  name: string
  /** The namespace URI ('' for none). */
  ns: string
  /** Attributes by local name (namespace declarations left out). */
  attrs: Record<string, string>
  children: XmlElement[]
  /** The element's own text (not its children's), entities decoded. */
  text: string
}

export class XmlError extends Error {}

const NAME = /[A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?/y
const ENTITIES: Record<string, string> = {lt: '<', gt: '>', amp: '&', quot: '"', apos: "'"}

export function parseXml(text: string): XmlElement {
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0
  const fail = (what: string): never => {
    throw new XmlError(`${what} at line ${text.slice(0, pos).split('\n').length}`)
  }
  const decode = (raw: string): string =>
    raw.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);|&/g, (whole, ref: string | undefined) => {
      if (!ref) return fail('a bare "&"')
      if (ref[0] !== '#') return ENTITIES[ref] ?? fail(`an unknown entity &${ref};`)
      const code = ref[1] === 'x' ? Number.parseInt(ref.slice(2), 16) : Number(ref.slice(1))
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : fail(`a bad character reference ${whole}`)
    })
  const name = (): string => {
    NAME.lastIndex = pos
    const m = NAME.exec(text)
    if (!m) fail('a name expected')
    pos += m![0].length
    return m![0]
  }
  const space = () => {
    while (pos < text.length && /\s/.test(text[pos])) pos++
  }
  const skipTo = (end: string, what: string): string => {
    const at = text.indexOf(end, pos)
    if (at < 0) fail(`${what} not closed`)
    const inner = text.slice(pos, at)
    pos = at + end.length
    return inner
  }
  /** Comments, processing instructions; a DOCTYPE is refused. */
  const misc = (): boolean => {
    if (text.startsWith('<!--', pos)) {
      pos += 4
      skipTo('-->', 'a comment')
      return true
    }
    if (text.startsWith('<?', pos)) {
      pos += 2
      skipTo('?>', 'a processing instruction')
      return true
    }
    if (text.startsWith('<!DOCTYPE', pos) || text.startsWith('<!ENTITY', pos)) fail('a DOCTYPE (not allowed here)')
    return false
  }

  type Scope = Map<string, string>
  const element = (outer: Scope): XmlElement => {
    pos++ // '<'
    const qname = name()
    const raw: Array<[string, string]> = []
    for (;;) {
      const before = pos
      space()
      if (text.startsWith('/>', pos) || text[pos] === '>') break
      if (pos === before) fail('a space expected between attributes')
      const attr = name()
      space()
      if (text[pos] !== '=') fail(`"=" expected after ${attr}`)
      pos++
      space()
      const quote = text[pos]
      if (quote !== '"' && quote !== "'") fail('a quoted attribute value expected')
      pos++
      const value = skipTo(quote, 'an attribute value')
      if (value.includes('<')) fail('"<" in an attribute value')
      if (raw.some(([a]) => a === attr)) fail(`attribute ${attr} given twice`)
      raw.push([attr, decode(value)])
    }
    const scope: Scope = new Map(outer)
    for (const [attr, value] of raw) {
      if (attr === 'xmlns') scope.set('', value)
      else if (attr.startsWith('xmlns:')) scope.set(attr.slice(6), value)
    }
    const [prefix, local] = qname.includes(':') ? qname.split(':') : ['', qname]
    const ns = scope.get(prefix)
    if (ns === undefined && prefix !== '') fail(`namespace prefix ${prefix} not declared`)
    const attrs: Record<string, string> = Object.create(null)
    for (const [attr, value] of raw) if (attr !== 'xmlns' && !attr.startsWith('xmlns:')) attrs[attr.includes(':') ? attr.split(':')[1] : attr] = value
    const node: XmlElement = {name: local, ns: ns ?? '', attrs, children: [], text: ''}
    if (text.startsWith('/>', pos)) {
      pos += 2
      return node
    }
    pos++ // '>'
    for (;;) {
      if (pos >= text.length) fail(`<${qname}> not closed`)
      if (text.startsWith('</', pos)) {
        pos += 2
        const closing = name()
        space()
        if (closing !== qname || text[pos] !== '>') fail(`</${qname}> expected`)
        pos++
        return node
      }
      if (text.startsWith('<![CDATA[', pos)) {
        pos += 9
        node.text += skipTo(']]>', 'a CDATA section')
      } else if (misc()) {
        // skipped
      } else if (text[pos] === '<') node.children.push(element(scope))
      else {
        const end = text.indexOf('<', pos)
        const chunk = text.slice(pos, end < 0 ? text.length : end)
        node.text += decode(chunk)
        pos += chunk.length
      }
    }
  }

  for (space(); misc(); space());
  if (text[pos] !== '<') fail('an element expected')
  const root = element(new Map([['xml', 'http://www.w3.org/XML/1998/namespace']]))
  for (space(); misc(); space());
  if (pos < text.length) fail('content after the document element')
  return root
}

/** The first child element named `name` (local name), or undefined. */
export const child = (node: XmlElement | undefined, name: string): XmlElement | undefined => node?.children.find((c) => c.name === name)
export const children = (node: XmlElement | undefined, name: string): XmlElement[] => node?.children.filter((c) => c.name === name) ?? []
/** Follows `a/b/c` by local names. */
export const at = (node: XmlElement | undefined, path: string): XmlElement | undefined => path.split('/').reduce(child, node)
