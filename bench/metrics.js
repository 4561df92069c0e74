#!/usr/bin/env node
// What radius:serve --metrics costs per request: the hand-written registry (src/radius/metrics.ts)
// side by side with prom-client doing the same work (a counter by client/outcome/reason, a latency
// histogram with the same buckets), and one scrape of each. prom-client is not a dependency: give
// its folder with PROM_CLIENT=/path/to/node_modules/prom-client (npm install --prefix DIR
// prom-client), or only the hand-written figures are printed. Run after `npm run build`:
//   node bench/metrics.js
import {createRequire} from 'node:module'
import {BUCKETS, RadiusMetrics} from '../dist/radius/metrics.js'

const N = Number(process.env.BENCH_N ?? 2_000_000)
const ROUNDS = 5
// A realistic mix: a few client networks, the common outcomes; 1 in 20 a drop.
const CLIENTS = ['127.0.0.1', '10.0.0.0/24', '10.0.1.0/24', '::1']
const OUTCOMES = [
  ['allowed', 'code_accepted'],
  ['challenge', 'code_required'],
  ['denied', 'code_wrong'],
  ['allowed', 'no_secret'],
]
const events = Array.from({length: 1024}, (_, i) => {
  const [outcome, reason] = i % 20 === 0 ? ['dropped', 'unproven'] : OUTCOMES[i % OUTCOMES.length]
  return {client: CLIENTS[i % CLIENTS.length], outcome, reason, seconds: 0.0003 + (i % 50) / 10_000}
})

function time(observe) {
  const ns = []
  for (let round = 0; round < ROUNDS + 1; round++) {
    const started = process.hrtime.bigint()
    for (let i = 0; i < N; i++) observe(events[i & 1023])
    if (round > 0) ns.push(Number(process.hrtime.bigint() - started) / N) // round 0 warms up
  }
  return ns.sort((a, b) => a - b)[Math.floor(ns.length / 2)]
}

const rows = []
const ours = new RadiusMetrics()
rows.push(['hand-written (src/radius/metrics.ts)', time((e) => ours.observe(e)), () => ours.render()])

const promPath = process.env.PROM_CLIENT
if (promPath) {
  const prom = createRequire(import.meta.url)(promPath)
  const registry = new prom.Registry()
  const requests = new prom.Counter({name: 'r_total', help: 'h', labelNames: ['client', 'outcome', 'reason'], registers: [registry]})
  const latency = new prom.Histogram({name: 'd_seconds', help: 'h', buckets: BUCKETS, registers: [registry]})
  const storeErrors = new prom.Counter({name: 's_total', help: 'h', registers: [registry]})
  const observe = (e) => {
    requests.inc({client: e.client, outcome: e.outcome, reason: e.reason})
    if (e.reason === 'store_unavailable') storeErrors.inc()
    if (e.outcome !== 'dropped') latency.observe(e.seconds)
  }
  const version = createRequire(import.meta.url)(`${promPath}/package.json`).version
  rows.push([`prom-client ${version}`, time(observe), () => registry.metrics()])
} else console.log('(prom-client not given: PROM_CLIENT=/path/to/node_modules/prom-client for the side-by-side figure)')

console.log(`metrics cost per request, median of ${ROUNDS} rounds of ${N} observations (counter + histogram):`)
for (const [name, ns, render] of rows) {
  const started = process.hrtime.bigint()
  await render()
  const scrapeMs = Number(process.hrtime.bigint() - started) / 1e6
  console.log(`  ${name.padEnd(40)} ${ns.toFixed(0).padStart(5)} ns/request   scrape ${scrapeMs.toFixed(2)} ms`)
}
// At the goal of 8 000 accepted logins/s, 1 s of requests costs this share of one core:
for (const [name, ns] of rows) console.log(`  ${name.padEnd(40)} ${((ns * 8000) / 1e7).toFixed(3)} % of a core at 8 000 req/s`)
