import {Flags} from '@oclif/core'
import {isIP} from 'node:net'
import {BaseCommand} from '../../base-command.js'
import {usageError} from '../../core/errors.js'
import {checkLogin} from '../../login/check.js'
import {loadClients} from '../../radius/clients.js'
import {RadiusMetrics} from '../../radius/metrics.js'
import {type Judge, type Observation, RadiusServer} from '../../radius/server.js'
import {isDatabaseUrl, openStore, type StoreBackend} from '../../store/backend.js'
import {resolveStore} from '../../store/config.js'

/** `ADDR:PORT`, `[V6ADDR]:PORT`. */
export function parseListen(value: string, flag = '--listen'): {host: string; port: number} {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value)
  const host = m ? (m[1] ?? m[2]) : ''
  const port = m ? Number(m[3]) : -1
  if (!m || !isIP(host) || port > 65535) throw usageError(`${flag} ${JSON.stringify(value)} is not ADDR:PORT (e.g. 127.0.0.1:1812 or [::]:1812)`)
  return {host, port}
}

/** radius:serve runs until a signal and has no JSON output. */
export type ServeResult = void

export default class Serve extends BaseCommand<typeof Serve> {
  static override description = `answer RADIUS Access-Requests with the SSH 2FA rules (pam_radius_auth, VPNs, switches)

Runs in the foreground (SIGTERM or SIGINT: answers the requests already taken, then exits 0;
SIGHUP: reads the clients file again). Each request is judged like
"login:check USER --service ssh --method password --code CODE" (code clients: "--service ui",
and only a checked code lets a user in unless the line says allow-no-secret) and recorded in the
audit trail. A request that proves no shared secret, or comes from a local socket that is not
root's, gets no answer. A signed Status-Server (RFC 5997) gets a bare Access-Accept. Clients file: one client a line, "ADDRESS[/BITS] SECRET [code|challenge]
[require-ma] [allow-no-secret]", mode 600, root's (or yours), in a directory only its owner can change.`
  static override audited = false // each decision is audited on its own, with the client's address
  static override enableJsonFlag = false
  static override examples = [
    'sudo <%= config.bin %> radius:serve --listen 127.0.0.1:1812 --clients /etc/tfactl/radius-clients',
    'sudo <%= config.bin %> radius:serve --listen 0.0.0.0:1812 --clients /etc/tfactl/radius-clients --verbose',
    'sudo <%= config.bin %> radius:serve --listen [::]:1812 --clients /etc/tfactl/radius-clients --metrics 127.0.0.1:9812',
  ]
  static override flags = {
    listen: Flags.string({description: 'address and UDP port to answer on (ADDR:PORT, [V6ADDR]:PORT)', default: '127.0.0.1:1812'}),
    clients: Flags.string({description: 'the clients file (who may ask, with which shared secret)', required: true}),
    verbose: Flags.boolean({description: 'log every decision (user, client, outcome), not only problems'}),
    metrics: Flags.string({
      description: 'serve Prometheus metrics at http://ADDR:PORT/metrics (requests by client, outcome and reason; latency; store errors; database pool)',
    }),
    'db-connections': Flags.integer({
      description:
        "connections kept to a database store: logins arriving together are checked as one batch (one transaction), that many batches at once (PostgreSQL's max_connections bounds the sum over responders)",
      min: 1,
      max: 500,
      default: 32,
    }),
  }

  async run(): Promise<ServeResult> {
    const {host, port} = parseListen(this.flags.listen)
    const metricsAt = this.flags.metrics === undefined ? undefined : parseListen(this.flags.metrics, '--metrics')
    const clientsPath = this.flags.clients
    const clients = loadClients(clientsPath)
    const log = (line: string) => process.stderr.write(`tfactl radius: ${line}\n`)
    const store = await this.responderStore()
    const {login, audit, pool} = store.responder(log) // how logins run side by side, and where decisions are recorded: the backend's business
    const judge: Judge = async ({user, code, service}) => (await checkLogin({login}, {user, service, method: 'password', code})).result
    const metrics = metricsAt && new RadiusMetrics(pool)
    const observe = metrics && ((event: Observation) => metrics.observe(event))
    const server = new RadiusServer({clients, judge, audit: (e) => audit.record(e), log, verbose: this.flags.verbose, observe})
    let metricsServer: Awaited<ReturnType<RadiusMetrics['listen']>> | undefined
    if (metrics && metricsAt)
      try {
        metricsServer = await metrics.listen(metricsAt.host, metricsAt.port)
      } catch (error) {
        throw usageError(`cannot serve metrics on ${this.flags.metrics}: ${(error as Error).message}`)
      }
    let bound: number
    try {
      bound = await server.listen(host, port)
    } catch (error) {
      metricsServer?.close()
      throw usageError(`cannot listen on ${this.flags.listen}: ${(error as Error).message}`)
    }
    // The signals are handled before the line that says the responder is up (a supervisor may signal at once).
    const stopped = new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log(`${signal}: answering the requests in flight, then exiting`)
        process.off('SIGHUP', reload)
        resolve()
      }
      const reload = () => {
        try {
          server.clients = loadClients(clientsPath)
          log(`SIGHUP: ${server.clients.length} client network(s) read from ${clientsPath}`)
        } catch (error) {
          log(`SIGHUP: kept the previous clients: ${(error as Error).message}`)
        }
      }
      process.once('SIGTERM', () => stop('SIGTERM'))
      process.once('SIGINT', () => stop('SIGINT'))
      process.on('SIGHUP', reload)
    })
    const hostPort = (h: string, p: number) => `${h.includes(':') ? `[${h}]` : h}:${p}`
    if (metricsServer && metricsAt) log(`metrics on http://${hostPort(metricsAt.host, metricsServer.boundPort)}/metrics`)
    log(`answering on ${hostPort(host, bound)} for ${clients.length} client network(s) from ${clientsPath}, store ${store.description}`)
    await stopped
    await server.close()
    metricsServer?.closeAllConnections()
    await new Promise((resolve) => (metricsServer ? metricsServer.close(resolve) : resolve(undefined)))
    await audit.drain()
    const s = server.stats
    log(`stopped: ${s.accepted} accepted, ${s.rejected} rejected, ${s.challenged} challenged, ${s.dropped} dropped, ${s.status} status`)
    if (store !== this.store) await store.close()
    process.exitCode = 0
  }

  /** The command's store; a database one is opened again with room for concurrent logins. */
  private async responderStore(): Promise<StoreBackend> {
    const {spec, keyFile} = resolveStore({store: this.flags.store, keyFile: this.flags['key-file']})
    if (!isDatabaseUrl(spec)) return this.store
    return openStore(spec, {keyFile, poolSize: this.flags['db-connections']})
  }
}
