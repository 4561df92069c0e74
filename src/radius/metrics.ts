import {createServer, type Server} from 'node:http'
import type {Observation} from './server.js'

/**
 * The responder's Prometheus metrics (text exposition format 0.0.4), hand-written rather than
 * prom-client: per request it is one Map lookup and a few additions (bench/metrics.mjs measures
 * both). Labels are the client's network as the clients file writes it ('-': no client's), the
 * outcome and the reason — never a user name, a code or a secret, and a bounded set: networks come
 * from the clients file, reasons from the code.
 */

/** Latency buckets in seconds: answers take about a millisecond; a rejection waits out the fail delay. */
export const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** `"` `\` and newlines escaped, as the exposition format wants label values. */
const label = (value: string): string => value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))

export class RadiusMetrics {
  /** client, outcome and reason joined by NULs → the escaped labels (built once) and the count. */
  private readonly requests = new Map<string, {labels: string; value: number}>()
  private readonly counts = new Array<number>(BUCKETS.length).fill(0)
  private sum = 0
  private observed = 0
  private storeErrors = 0

  constructor(private readonly pool?: () => {inUse: number; waiting: number}) {}

  /** One request's fate (RadiusServer's `observe`). */
  observe(event: Observation): void {
    const key = `${event.client}\0${event.outcome}\0${event.reason}`
    const seen = this.requests.get(key)
    if (seen) seen.value++
    else this.requests.set(key, {labels: `client="${label(event.client)}",outcome="${event.outcome}",reason="${label(event.reason)}"`, value: 1})
    if (event.reason === 'store_unavailable') this.storeErrors++
    if (event.outcome === 'dropped' || event.outcome === 'duplicate' || event.outcome === 'status') return
    this.observed++
    this.sum += event.seconds
    let i = 0
    while (i < BUCKETS.length && event.seconds > BUCKETS[i]) i++
    if (i < BUCKETS.length) this.counts[i]++
  }

  /** The exposition text. */
  render(): string {
    const out: string[] = [
      '# HELP tfactl_radius_requests_total RADIUS requests by client network, outcome and reason',
      '# TYPE tfactl_radius_requests_total counter',
    ]
    for (const {labels, value} of this.requests.values()) out.push(`tfactl_radius_requests_total{${labels}} ${value}`)
    out.push(
      '# HELP tfactl_radius_request_duration_seconds time from a decided request to its answer (drops, duplicates and Status-Server excluded)',
      '# TYPE tfactl_radius_request_duration_seconds histogram',
    )
    let cumulative = 0
    for (let i = 0; i < BUCKETS.length; i++) {
      cumulative += this.counts[i]
      out.push(`tfactl_radius_request_duration_seconds_bucket{le="${BUCKETS[i]}"} ${cumulative}`)
    }
    out.push(
      `tfactl_radius_request_duration_seconds_bucket{le="+Inf"} ${this.observed}`,
      `tfactl_radius_request_duration_seconds_sum ${this.sum}`,
      `tfactl_radius_request_duration_seconds_count ${this.observed}`,
      '# HELP tfactl_radius_store_errors_total requests answered Access-Reject because the store could not be read or written',
      '# TYPE tfactl_radius_store_errors_total counter',
      `tfactl_radius_store_errors_total ${this.storeErrors}`,
    )
    if (this.pool) {
      const {inUse, waiting} = this.pool()
      out.push(
        '# HELP tfactl_radius_db_pool_in_use database connections checked out',
        '# TYPE tfactl_radius_db_pool_in_use gauge',
        `tfactl_radius_db_pool_in_use ${inUse}`,
        '# HELP tfactl_radius_db_pool_waiting logins waiting for a database connection',
        '# TYPE tfactl_radius_db_pool_waiting gauge',
        `tfactl_radius_db_pool_waiting ${waiting}`,
      )
    }
    return `${out.join('\n')}\n`
  }

  /** Serves GET /metrics on `host:port` (other paths 404, other methods 405); resolves with the bound port. */
  listen(host: string, port: number): Promise<Server & {boundPort: number}> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0]
      if (path !== '/metrics') {
        res.writeHead(404, {'content-type': 'text/plain'}).end('not found\n')
        return
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, {allow: 'GET, HEAD', 'content-type': 'text/plain'}).end('method not allowed\n')
        return
      }
      res.writeHead(200, {'content-type': 'text/plain; version=0.0.4; charset=utf-8'}).end(req.method === 'HEAD' ? undefined : this.render())
    })
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        const address = server.address()
        resolve(Object.assign(server, {boundPort: typeof address === 'object' && address ? address.port : port}))
      })
    })
  }
}
