import {isIPv4, isIPv6} from 'node:net'
import {endianness, networkInterfaces} from 'node:os'
import type {UdpTables} from '../os/sockets.js'

/**
 * Who sent a datagram from this very host. A request from one of the host's own addresses
 * (loopback or an interface's) was sent by a local process, and on Linux the kernel says which
 * user owns each UDP socket: /proc/net/udp and /proc/net/udp6 list every socket's local address,
 * port and uid. sshd's pam_radius_auth runs as root; a local user who found the responder does
 * not, so a one-host responder serves local requests from root's sockets only. The lookup covers
 * IPv4, IPv6 and IPv4-mapped IPv6 (a dual-stack socket sending to 127.0.0.1), and fails closed:
 * no matching socket, one that is not root's among several, or an unreadable table all mean "not root".
 */

const V4_MAPPED_PREFIX = Buffer.from('00000000000000000000ffff', 'hex')

const ipv4Bytes = (address: string): Buffer => Buffer.from(address.split('.').map(Number))

function ipv6Bytes(address: string): Buffer {
  const mapped = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(address)
  let text = address
  if (mapped) {
    const b = ipv4Bytes(mapped[2])
    text = `${mapped[1]}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined]
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
  const out = Buffer.alloc(16)
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2)
  return out
}

/** Senders' addresses as octets, remembered (a few hundred clients send again and again); bounded, a flood of sources only clears it. */
const known = new Map<string, Buffer | undefined>()
const KNOWN_MAX = 4096

/** An address as octets: 4 for IPv4 and IPv4-mapped IPv6 (`::ffff:a.b.c.d`), 16 for IPv6 (zone dropped). Never to be changed by the caller. */
export function addressBytes(address: string): Buffer | undefined {
  if (known.has(address)) return known.get(address)
  const plain = address.replace(/%.*$/, '')
  const bytes = isIPv4(plain) ? ipv4Bytes(plain) : isIPv6(plain) ? unmap(ipv6Bytes(plain)) : undefined
  if (known.size >= KNOWN_MAX) known.clear()
  known.set(address, bytes)
  return bytes
}

const unmap = (bytes: Buffer): Buffer => (bytes.length === 16 && bytes.subarray(0, 12).equals(V4_MAPPED_PREFIX) ? bytes.subarray(12) : bytes)

/** A /proc/net address field (hex, each 32-bit word in the host's byte order) as octets in network order. */
function procAddress(hex: string): Buffer {
  const raw = Buffer.from(hex, 'hex')
  if (endianness() === 'BE') return raw
  for (let i = 0; i < raw.length; i += 4) raw.subarray(i, i + 4).reverse()
  return raw
}

/** One socket of the tables: its local address (octets, IPv4-mapped unmapped), the table's width, its owner. */
interface TableSocket {
  local: Buffer
  width: 4 | 16
  uid: number
}

/**
 * The tables' sockets on one local port, found once per read of the tables and port: every
 * request that waited for one read (src/radius/server.ts tablesAfterNow) looks its sender up in
 * the same answer. Only the lines that hold the port's text (`:PPPP `, as the kernel writes a
 * local or remote port) are parsed, not the whole tables.
 */
const indexes = new WeakMap<UdpTables, Map<number, TableSocket[]>>()

function socketsOn(tables: UdpTables, port: number): TableSocket[] {
  let index = indexes.get(tables)
  if (!index) indexes.set(tables, (index = new Map()))
  let sockets = index.get(port)
  if (sockets) return sockets
  sockets = []
  const needle = `:${port.toString(16).toUpperCase().padStart(4, '0')} `
  for (const [table, width] of [
    [tables.udp, 4],
    [tables.udp6, 16],
  ] as const) {
    let lastLine = -1
    for (let at = table.indexOf(needle); at >= 0; at = table.indexOf(needle, at + 1)) {
      const start = table.lastIndexOf('\n', at) + 1
      if (start === 0 || start === lastLine) continue // the header line; a line already parsed (its remote port matched too)
      lastLine = start
      const end = table.indexOf('\n', at)
      const fields = table
        .slice(start, end < 0 ? table.length : end)
        .trim()
        .split(/\s+/)
      if (fields.length < 8) continue
      const [hexAddress, hexPort] = fields[1].split(':')
      if (hexPort === undefined || hexAddress.length !== width * 2 || Number.parseInt(hexPort, 16) !== port) continue // the remote port matched
      sockets.push({local: unmap(procAddress(hexAddress)), width, uid: Number(fields[7])})
    }
  }
  index.set(port, sockets)
  return sockets
}

/**
 * The owners (uids) of the sockets that could have sent a datagram from `address`:`port`: bound
 * to that port and to that address or to the wildcard, in either table (an IPv4 source may be a
 * dual-stack IPv6 socket). Pure over the tables' text (parsed once per tables object).
 */
export function socketOwners(tables: UdpTables, address: string, port: number): number[] {
  const sourceBytes = addressBytes(address)
  if (!sourceBytes) return []
  const v4 = sourceBytes.length === 4
  const owners: number[] = []
  for (const {local, width, uid} of socketsOn(tables, port)) {
    const wildcard = local.every((octet) => octet === 0) && (width === 16 || v4) // a dual-stack socket also sends from IPv4
    if (wildcard || local.equals(sourceBytes)) owners.push(uid)
  }
  return owners
}

const LOOPBACK6 = ipv6Bytes('::1')

/** This host's interface addresses, read at most once a second (networkInterfaces() takes about 0.3 ms). */
let interfaces: {at: number; addresses: Buffer[]} | undefined
function hostAddresses(now = Date.now()): Buffer[] {
  if (!interfaces || now - interfaces.at > 1000) {
    const addresses = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => addressBytes(i.address)))
    interfaces = {at: now, addresses: addresses.filter((a): a is Buffer => a !== undefined)}
  }
  return interfaces.addresses
}

/** Whether `address` is one of this host's own (loopback, or an interface's): a local process sent it. */
export function isLocalAddress(address: string): boolean {
  const bytes = addressBytes(address)
  if (!bytes) return false
  if (bytes.length === 4 ? bytes[0] === 127 : bytes.equals(LOOPBACK6)) return true
  return hostAddresses().some((mine) => mine.equals(bytes))
}

/** The local-sender rule: served when every socket that could have sent it is root's (and there is one). */
export function localSenderIsRoot(tables: UdpTables, address: string, port: number): boolean {
  const owners = socketOwners(tables, address, port)
  return owners.length > 0 && owners.every((uid) => uid === 0)
}
