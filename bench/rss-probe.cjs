// Preloaded (node --require) only by bench/run.js in separate runs: writes the process's peak
// RSS (KB) to TFACTL_BENCH_RSS_FILE when it exits. The peak is VmHWM of /proc/self/status (this
// program's own memory since exec), not getrusage's maxRSS: Linux carries the parent's high-water
// mark across fork + exec into maxRSS, so a bench holding 100 000 secrets made every child look
// ~100 MB. Elsewhere (no /proc) maxRSS is the best there is.
const {readFileSync, writeFileSync} = require('node:fs')
process.on('exit', () => {
  if (!process.env.TFACTL_BENCH_RSS_FILE) return
  let kb
  try {
    kb = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]
  } catch {
    // no /proc
  }
  writeFileSync(process.env.TFACTL_BENCH_RSS_FILE, String(kb ?? process.resourceUsage().maxRSS))
})
