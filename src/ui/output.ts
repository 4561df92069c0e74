import type {Settings, StatusSummary} from '../core/model.js'

const onOff = (v: boolean) => (v ? 'on' : 'off')

/** The settings as an admin reads them, one per line. */
export function settingsLines(s: Settings): string[] {
  return [
    `2FA:          ${onOff(s.enabled)}`,
    `SSH 2FA:      ${onOff(s.ssh)}`,
    `STIG mode:    ${onOff(s.stig)}`,
    `window:       ${s.window} step(s) before and after`,
    `issuer:       ${s.issuer}`,
    `lockout:      ${s.maxFailures === 0 ? 'off' : `${s.maxFailures} failures → ${s.lockout} s`}, fail delay ${s.failDelay} ms`,
  ]
}

/** The global settings as they appear in JSON results (the public subset). */
export const publicSettings = (s: Settings) => ({
  enabled: s.enabled,
  window: s.window,
  ssh: s.ssh,
  stig: s.stig,
  issuer: s.issuer,
  maxFailures: s.maxFailures,
  lockout: s.lockout,
  failDelay: s.failDelay,
})

export const statusResult = ({settings, total, configured}: StatusSummary) => ({...publicSettings(settings), users: {total, configured}})

export const statusLines = ({settings, total, configured}: StatusSummary): string[] => [
  ...settingsLines(settings),
  `users:        ${configured} with a secret (${total} known)`,
]
