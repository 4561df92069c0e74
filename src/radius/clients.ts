import * as fs from 'node:fs'
import {BlockList, isIPv4, isIPv6} from 'node:net'
import {dirname} from 'node:path'
import {TfaError, EXIT, usageError} from '../core/errors.js'
import {checkStoreDir} from '../os/files.js'

/**
 * The clients file: who may ask, with which shared secret, in which mode.
 *
 *   # ADDRESS[/BITS]  SECRET  [code|challenge]  [require-ma]  [allow-no-secret]
 *   127.0.0.1         s3cret-shared-with-pam   challenge
 *   10.0.0.0/24       other-secret             code  require-ma
 *
 * Read like liboath reads its users file, one phase per function: open (a regular file of the
 * caller or root, not a link, in a directory only they can change, readable by nobody else: it
 * holds secrets and says who may ask, so it is judged like the key file), parse each line (one
 * error per rule, `FILE:LINE: reason`), then match a source address (the most specific network
 * wins).
 */

export type Mode = 'code' | 'challenge'

export interface Client {
  /** As written in the file (`10.0.0.0/24`), for logs and the audit trail. */
  network: string
  secret: Buffer
  mode: Mode
  /** Requests without a Message-Authenticator are dropped. */
  requireMa: boolean
  /**
   * Code mode: a user who needs no code (no secret, 2FA off) is accepted. Off by default: in
   * code mode the password is the code, so such a user would get in with any password.
   */
  allowNoSecret: boolean
  line: number
  bits: number
  family: 'ipv4' | 'ipv6'
  list: BlockList
}

const clientsError = (message: string) => new TfaError(message, EXIT.usage, 'clients_file')

/**
 * Phase 1: the file itself. Refused when it is a link, not a regular file, another user's, in a
 * directory another user could change, or readable or writable by others (the key file's rules).
 */
export function readClientsFile(path: string): string {
  try {
    checkStoreDir(dirname(path), "the clients file's directory")
  } catch (error) {
    if (error instanceof TfaError) throw clientsError(`${path}: ${error.message}`)
    throw error
  }
  let fd: number
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ELOOP') throw clientsError(`${path}: is a symbolic link; use the file itself`)
    if (code === 'ENOENT') throw clientsError(`${path}: no such clients file`)
    throw clientsError(`${path}: cannot read the clients file (${code ?? (error as Error).message})`)
  }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw clientsError(`${path}: not a regular file`)
    const me = process.getuid?.() ?? 0
    if (st.uid !== me && st.uid !== 0)
      throw clientsError(`${path}: belongs to uid ${st.uid}, not to you (uid ${me}) or root, who could change who may ask: run chown ${me} ${path}`)
    if (st.mode & 0o077)
      throw clientsError(
        `${path}: holds shared secrets but can be read or written by group or others (mode ${(st.mode & 0o777).toString(8)}): run chmod 600 ${path}`,
      )
    return fs.readFileSync(fd, 'utf8')
  } finally {
    fs.closeSync(fd)
  }
}

/** One address, optionally with its prefix length; IPv4 and IPv6. */
function parseNetwork(token: string): {address: string; bits: number; family: 'ipv4' | 'ipv6'} | string {
  const [address, bitsText, extra] = token.split('/')
  if (extra !== undefined) return `"${token}" is not ADDRESS[/BITS]`
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined
  if (!family) return `"${address}" is not an IPv4 or IPv6 address`
  const max = family === 'ipv4' ? 32 : 128
  if (bitsText === undefined) return {address, bits: max, family}
  if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > max) return `"/${bitsText}" is not a prefix length (0..${max})`
  return {address, bits: Number(bitsText), family}
}

/** Phase 2: the lines. Every problem is reported as `FILE:LINE: reason`; the first one stops the read. */
export function parseClients(textOfFile: string, path: string): Client[] {
  const clients: Client[] = []
  const seen = new Map<string, number>()
  const lines = textOfFile.split('\n')
  for (const [index, rawLine] of lines.entries()) {
    const line = index + 1
    const fail = (reason: string) => clientsError(`${path}:${line}: ${reason}`)
    // A `#` starting a word starts a comment (a secret may contain `#` inside it).
    const tokens: string[] = []
    for (const token of rawLine.trim().split(/[ \t]+/)) {
      if (token === '') continue
      if (token.startsWith('#')) break
      tokens.push(token)
    }
    if (tokens.length === 0) continue
    const [networkText, secretText, ...options] = tokens
    const network = parseNetwork(networkText)
    if (typeof network === 'string') throw fail(network)
    if (secretText === undefined) throw fail('no shared secret after the address')
    const secret = Buffer.from(secretText, 'utf8')
    if (secret.length > 128) throw fail('shared secret longer than 128 octets')
    let mode: Mode | undefined
    let requireMa = false
    let allowNoSecret = false
    for (const option of options) {
      if (option === 'code' || option === 'challenge') {
        if (mode) throw fail(`mode given twice ("${mode}" and "${option}")`)
        mode = option
      } else if (option === 'require-ma') {
        if (requireMa) throw fail('"require-ma" given twice')
        requireMa = true
      } else if (option === 'allow-no-secret') {
        if (allowNoSecret) throw fail('"allow-no-secret" given twice')
        allowNoSecret = true
      } else throw fail(`unknown word "${option}" (expected code, challenge, require-ma or allow-no-secret)`)
    }
    if (allowNoSecret && mode === 'challenge') throw fail('"allow-no-secret" is for code clients (a challenge client lets users without a secret in already)')
    const list = new BlockList()
    list.addSubnet(network.address, network.bits, network.family)
    const key = `${network.family}:${network.address}/${network.bits}`
    if (seen.has(key)) throw fail(`${networkText} is already listed on line ${seen.get(key)}`)
    seen.set(key, line)
    clients.push({network: networkText, secret, mode: mode ?? 'code', requireMa, allowNoSecret, line, bits: network.bits, family: network.family, list})
  }
  // The most specific network first, so that matchClient finds the narrowest entry.
  return clients.sort((a, b) => b.bits - a.bits || a.line - b.line)
}

/** Reads and parses the clients file; an empty one is an error (the responder would answer nobody). */
export function loadClients(path: string): Client[] {
  const clients = parseClients(readClientsFile(path), path)
  if (clients.length === 0) throw usageError(`${path}: lists no client (one a line: ADDRESS[/BITS] SECRET [code|challenge] [require-ma] [allow-no-secret])`)
  return clients
}

/** Phase 3: the client a datagram comes from, or undefined (it is dropped). IPv4-mapped IPv6 counts as IPv4. */
export function matchClient(clients: Client[], source: string): Client | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(source)
  const address = mapped ? mapped[1] : source
  const family = isIPv4(address) ? 'ipv4' : 'ipv6'
  return clients.find((c) => c.family === family && c.list.check(address, family))
}
