import {readFile} from 'node:fs/promises'

/**
 * The kernel's UDP socket tables (Linux): one line per socket with its local address and port
 * (hex) and its owner's uid. src/radius/peer.ts reads who sent a datagram from this host.
 */
export interface UdpTables {
  udp: string
  udp6: string
}

/**
 * Reads the kernel's UDP socket tables (empty text for a table that cannot be read). The kernel
 * walks its whole UDP hash to write them (about 0.3 ms a table here), so the reads run off the
 * event loop.
 */
export async function readUdpTables(): Promise<UdpTables> {
  const read = (path: string) => readFile(path, 'latin1').catch(() => '')
  const [udp, udp6] = await Promise.all([read('/proc/net/udp'), read('/proc/net/udp6')])
  return {udp, udp6}
}
