// A fake PostgreSQL server for tests: it speaks just enough of the protocol (v3) to refuse TLS,
// ask for a password the way a hostile server would (in clear, or as MD5), and then accept the
// login and never answer a query. It records what the client sent, so a test can tell whether a
// password left the host.
import {createServer, type Server, type Socket} from 'node:net'

export type FakeAuth = 'cleartext' | 'md5' | 'trust'

export interface FakePg {
  port: number
  /** Every PasswordMessage received (its payload as text). */
  passwords: string[]
  /** How many connections reached the startup message. */
  startups: number
  close(): Promise<void>
}

const message = (type: string, body: Buffer = Buffer.alloc(0)): Buffer => {
  const head = Buffer.alloc(5)
  head.write(type, 0, 'latin1')
  head.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([head, body])
}
const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}
const AUTH_OK = message('R', int32(0))
const READY = message('Z', Buffer.from('I'))

export async function startFakePg(auth: FakeAuth): Promise<FakePg> {
  const sockets = new Set<Socket>()
  const fake: FakePg = {port: 0, passwords: [], startups: 0, close: async () => {}}
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    let started = false
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        if (!started) {
          // untyped: SSLRequest / GSSENCRequest (answered 'N': no TLS here) or the StartupMessage
          if (buf.length < 4) return
          const len = buf.readInt32BE(0)
          if (buf.length < len) return
          const code = buf.readInt32BE(4)
          buf = buf.subarray(len)
          if (code === 80877103 || code === 80877104) {
            socket.write('N')
            continue
          }
          started = true
          fake.startups++
          if (auth === 'cleartext') socket.write(message('R', int32(3)))
          else if (auth === 'md5') socket.write(message('R', Buffer.concat([int32(5), Buffer.from([1, 2, 3, 4])])))
          else socket.write(Buffer.concat([AUTH_OK, READY]))
          continue
        }
        if (buf.length < 5) return
        const len = buf.readInt32BE(1)
        if (buf.length < len + 1) return
        const type = String.fromCharCode(buf[0])
        const body = buf.subarray(5, len + 1)
        buf = buf.subarray(len + 1)
        if (type === 'p') {
          fake.passwords.push(body.toString('utf8').replace(/\0$/, ''))
          socket.write(Buffer.concat([AUTH_OK, READY]))
        }
        // anything else (a query): never answered, as a stalled backend
      }
    })
  })
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  fake.port = (server.address() as {port: number}).port
  fake.close = () =>
    new Promise<void>((done) => {
      for (const s of sockets) s.destroy()
      server.close(() => done())
    })
  return fake
}
