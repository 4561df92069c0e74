/** A one-line progress bar on stderr, drawn only when stderr is a terminal and the batch is large. */
export function progress(label: string, total: number, minimum = 100): {tick(): void; done(): void} {
  if (!process.stderr.isTTY || total < minimum) return {tick() {}, done() {}}
  let count = 0
  const draw = () => {
    const width = 30
    const filled = Math.round((count / total) * width)
    process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${count}/${total}`)
  }
  return {
    tick() {
      count++
      if (count === total || count % Math.ceil(total / 100) === 0) draw()
    },
    done() {
      process.stderr.write('\n')
    },
  }
}
