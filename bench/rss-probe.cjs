// Preloaded (node --require) only by bench/run.js in separate runs: writes the process's peak
// RSS (KB) to TFACTL_BENCH_RSS_FILE when it exits.
const {writeFileSync} = require('node:fs')
process.on('exit', () => {
  if (process.env.TFACTL_BENCH_RSS_FILE) writeFileSync(process.env.TFACTL_BENCH_RSS_FILE, String(process.resourceUsage().maxRSS))
})
