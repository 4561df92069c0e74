import {readFileSync} from 'node:fs'

/**
 * The kernel's UDP socket tables (Linux): one line per socket with its local address and port
 * (hex) and its owner's uid. src/radius/peer.ts reads who sent a datagram from this host.
 */
export interface UdpTables {
  udp: string
  udp6: string
}

/** Reads the kernel's UDP socket tables (empty text for a table that cannot be read). */
export function readUdpTables(): UdpTables {
  const read = (path: string) => {
    try {
      return readFileSync(path, 'latin1')
    } catch {
      return ''
    }
  }
  return {udp: read('/proc/net/udp'), udp6: read('/proc/net/udp6')}
}
