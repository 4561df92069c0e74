import {execFileSync} from 'node:child_process'
import {existsSync} from 'node:fs'

/**
 * Whether the system clock is NTP-synchronised: true, false, or undefined when it cannot be
 * told. TOTP codes are only as good as the clock.
 */
export function clockSynced(): boolean | undefined {
  if (existsSync('/run/systemd/timesync/synchronized')) return true
  for (const [cmd, args, good] of [
    ['timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], /^yes/],
    ['chronyc', ['-n', 'tracking'], /Leap status\s*:\s*Normal/],
  ] as const) {
    try {
      const out = execFileSync(cmd, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000})
      return good.test(out)
    } catch {
      // not installed or not running: try the next way
    }
  }
  return undefined
}
