// Holds a store lock the way tfactl does, with the product's own lock module (dist/): used by
// tests that need "another tfactl is writing". Prints `locked` once it holds the lock, then
// keeps it for the given seconds. Usage: node hold-lock.mjs <store>.lock <seconds>
import {withLock} from '../../dist/store/file/lock.js'

const [lock, seconds] = process.argv.slice(2)
await withLock(lock, async () => {
  process.stdout.write('locked\n')
  await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000))
})
