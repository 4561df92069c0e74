import {timingSafeEqual} from 'node:crypto'
import {hmacOf, type Mac} from '../../core/mac.js'
import {DEFAULT_SETTINGS, type Settings} from '../../core/model.js'

/**
 * The settings of a database store, authenticated with its key: HMAC-SHA256 under a subkey of
 * the store key (so the key that seals secrets is never used as a MAC key itself) over the key
 * id and every settings field, in a fixed order. Whoever can write the database but holds no key
 * cannot turn 2FA, SSH 2FA or STIG mode off, widen the window or drop the lockout: every host
 * that holds the key refuses settings its key did not authenticate.
 */
const SUBKEY_LABEL = 'tfactl settings mac v1'

/** Every field a login reads, in one fixed order: the fields of Settings, sorted by name. */
const FIELDS = Object.keys(DEFAULT_SETTINGS).sort() as (keyof Settings)[]

export function canonicalSettings(keyId: string, settings: Settings): string {
  return JSON.stringify([keyId, FIELDS.map((f) => [f, settings[f]])])
}

/**
 * HMAC-SHA256 under each store key's subkey for a label, made once, not once a row (a responder
 * checks thousands a second): the subkey derived and its padded blocks kept (src/core/mac.ts).
 */
const macs = new WeakMap<Buffer, Map<string, Mac>>()

function macOf(key: Buffer, label: string): Mac {
  let byLabel = macs.get(key)
  if (!byLabel) macs.set(key, (byLabel = new Map()))
  let mac = byLabel.get(label)
  if (!mac) byLabel.set(label, (mac = hmacOf('sha256', hmacOf('sha256', key)(Buffer.from(label)))))
  return mac
}

export function settingsMac(key: Buffer, keyId: string, settings: Settings): string {
  return macOf(key, SUBKEY_LABEL)(Buffer.from(canonicalSettings(keyId, settings))).toString('base64url')
}

export function macMatches(key: Buffer, keyId: string, settings: Settings, mac: string | null): boolean {
  if (mac === null) return false
  const want = Buffer.from(settingsMac(key, keyId, settings))
  const got = Buffer.from(mac)
  return want.length === got.length && timingSafeEqual(want, got)
}

/** JSON with every object's keys sorted: the same text for a row as written and as jsonb returns it. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object')
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`
  return JSON.stringify(value)
}

/**
 * A user's row authenticated with the key: its name and every field a login reads (secrets as
 * sealed, failures, lockout, last accepted step, recovery and bypass hashes). Without it, whoever
 * can write the database could put in the hash of a bypass or recovery code of their own, or lift
 * a lockout. What it cannot tell: a row put back as it was earlier, or removed (docs/security-database.md).
 */
export function rowMac(key: Buffer, keyId: string, name: string, data: string): string {
  return macOf(key, 'tfactl user row mac v1')(Buffer.from(JSON.stringify([keyId, name, canonical(JSON.parse(data))]))).toString('base64url')
}

export function rowMacMatches(key: Buffer, keyId: string, name: string, data: string, mac: string | null): boolean {
  if (mac === null) return false
  const want = Buffer.from(rowMac(key, keyId, name, data))
  const got = Buffer.from(mac)
  return want.length === got.length && timingSafeEqual(want, got)
}
