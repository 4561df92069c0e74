import {forbidden} from './errors.js'
import type {Doc, Settings} from './model.js'

export type SettingsChange = Partial<Omit<Settings, 'enabled'>>

const STIG_NEEDS_SSH = 'STIG mode requires 2FA for SSH: leave STIG mode first with twofactor:enable --no-stig'

/** Turns 2FA on and applies only the settings given. STIG mode keeps SSH 2FA on. */
export function enableSettings(current: Settings, change: SettingsChange): Settings {
  const given = Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined))
  const next: Settings = {...current, ...given, enabled: true}
  if (next.stig) {
    if (change.ssh === false) throw forbidden(STIG_NEEDS_SSH)
    next.ssh = true
  }
  return next
}

/** The emergency switch: 2FA off, every secret kept. STIG mode forbids it. */
export function disableSettings(current: Settings): Settings {
  if (current.stig) throw forbidden('STIG mode forbids turning 2FA off: leave STIG mode first with twofactor:enable --no-stig')
  return {...current, enabled: false}
}

export const sameSettings = (a: Settings, b: Settings): boolean => JSON.stringify(a) === JSON.stringify(b)

/**
 * TrueNAS enters STIG compatibility mode only when someone can still manage the host: STIG mode
 * refuses every web login without a code, so without an administrator who has a working secret
 * nobody could log in to turn it off. Returns what is missing (a sentence's object), or undefined
 * when root or one of `admins` has an active secret (a pending one does not count: it has not
 * proven a working authenticator).
 */
export function stigMissing(doc: Doc, admins: readonly string[], groups: readonly string[]): string | undefined {
  if (admins.some((name) => doc.users.get(name)?.secret)) return undefined
  return `an active 2FA secret for root or a member of the admin group (${groups.join(', ')}): enrol one first (tfactl user:secret:renew NAME, then confirm its first code)`
}
