import {EXIT, storeError, TfaError} from '../../core/errors.js'
import {type Doc, type Settings, STORE_VERSION} from '../../core/model.js'
import {readPrivateFile} from '../../os/files.js'
import type {KeyRing} from '../keys.js'
import {decodeStore, Reader} from '../sealed.js'

// The store's header line (version, key id, journal epoch, settings) read and rewritten without
// the key: settings are not sealed, and the user lines after it are carried byte for byte.

type Json = Record<string, unknown>

/** A key ring with no key: decoding a header (no users) never asks for one. */
export const NO_KEYS: KeyRing = {
  byId: () => undefined,
  current: () => {
    throw storeError('no key available')
  },
}

/** The store's text with new settings: the header line rewritten, every user line copied byte for byte. */
export function withSettings(
  text: string,
  where: string,
  change: (s: Settings) => Settings,
): {text: string; before: Settings; after: Settings; keyId: string | null} {
  const r = new Reader(where)
  const nl = text.indexOf('\n')
  const first = nl < 0 ? text : text.slice(0, nl)
  const rest = nl < 0 ? '' : text.slice(nl)
  let header: Json
  let body: string | undefined // the user lines and the closing `}}`, as they are
  let users: Json | undefined // a store not in tfactl's layout: its records, parsed but not opened
  if (first.endsWith('"users":{') && text.endsWith('\n}}\n')) {
    header = parseDocument(r, `${first}}}`)
    body = rest
  } else if (first.endsWith('"users":{}}') && (rest === '' || rest === '\n')) {
    header = parseDocument(r, first)
    body = ''
  } else {
    header = parseDocument(r, text)
    users = r.object(header.users ?? {}, 'users')
  }
  const {users: _ignored, ...fields} = header
  // Validates version, keyId and settings; with no users, no secret is opened.
  const decoded = decodeStore(JSON.stringify({...fields, users: {}}), where, NO_KEYS)
  const before = decoded.doc.settings
  const keyId = decoded.keyId
  const after = change(before)
  const head = JSON.stringify({...fields, settings: after, users: {}}).slice(0, -2) // ends with "users":{
  if (body !== undefined) return {text: body === '' ? `${head}}}\n` : `${head}${body}`, before, after, keyId}
  const lines = Object.keys(users!)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) // the order findUserLine relies on
    .map((name) => `${JSON.stringify(name)}:${JSON.stringify(users![name])}`)
  return {text: lines.length === 0 ? `${head}}}\n` : `${head}\n${lines.join(',\n')}\n}}\n`, before, after, keyId}
}

export function parseDocument(r: Reader, text: string): Json {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (error) {
    r.fail('file', `not valid JSON (${(error as Error).message})`)
  }
  return r.object(raw, 'document')
}

/** The settings a store file names, read without the key (undefined when they cannot be read). */
export function headerSettings(text: string, where: string): Settings | undefined {
  try {
    return withSettings(text, where, (s) => s).before
  } catch {
    return undefined
  }
}

/**
 * For a login that failed on a store error: when the store's header is readable and says 2FA is
 * off, a view with the settings alone (the decision needs no record then). Undefined otherwise:
 * the error stands, and the login fails closed.
 */
export function disabledView(error: unknown, path: string): Doc | undefined {
  if (!(error instanceof TfaError) || error.exit !== EXIT.store) return undefined
  let text: string | undefined
  try {
    text = readPrivateFile(path)?.toString('utf8')
  } catch {
    return undefined
  }
  const settings = text === undefined ? undefined : headerSettings(text, path)
  return settings && !settings.enabled ? {version: STORE_VERSION, settings, users: new Map()} : undefined
}

/** The settings of the store at `path` as its header says, without the key (undefined: none readable). */
export function peekSettings(path: string): Settings | undefined {
  try {
    const text = readPrivateFile(path)?.toString('utf8')
    return text === undefined ? undefined : headerSettings(text, path)
  } catch {
    return undefined
  }
}
