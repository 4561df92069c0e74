import type {Algorithm} from './totp.js'

export const STORE_VERSION = 1

export interface Settings {
  enabled: boolean
  /** Codes from this many steps before and after the current one count. */
  window: number
  ssh: boolean
  stig: boolean
  issuer: string
  /** Consecutive failed checks that lock a user; 0 = never. */
  maxFailures: number
  /** Seconds a lockout lasts. */
  lockout: number
  /** Milliseconds a failed check waits before answering. */
  failDelay: number
  /** pam_oath users file kept in sync with the store, once configured. */
  oathFile: string | null
}

export const DEFAULT_SETTINGS: Settings = {
  enabled: false,
  window: 1,
  ssh: false,
  stig: false,
  issuer: 'tfactl',
  maxFailures: 5,
  lockout: 300,
  failDelay: 1000,
  oathFile: null,
}

/** Logins never move a user's recorded drift further than this many steps from the host's clock. */
export const MAX_AUTO_DRIFT = 10
/** How far `user:secret:resync` looks, and the most drift a record may hold: one day. */
export const MAX_DRIFT_SECONDS = 86_400
export const maxDriftSteps = (interval: number): number => Math.floor(MAX_DRIFT_SECONDS / interval)

export type Interval = 30 | 60
export type Digits = 6 | 7 | 8
export const INTERVALS: readonly Interval[] = [30, 60]
export const DIGITS: readonly Digits[] = [6, 7, 8]

/** A TOTP secret and how codes are made from it. `secret` is base32 (in clear only in memory). */
export interface Enrolment {
  secret: string
  interval: Interval
  digits: Digits
  algorithm: Algorithm
  createdAt: string
}

/** Salted hashes of one-time codes; the codes themselves are never stored. */
export interface HashedCodes {
  salt: string
  hashes: string[]
}

/**
 * One user's state. The enrolment fields (`secret` … `createdAt`) describe the active secret;
 * `secret` is null for a user known only through a pending secret, lockout or bypass.
 */
export interface UserRecord {
  secret: string | null
  interval: Interval
  digits: Digits
  algorithm: Algorithm
  createdAt: string | null
  /** Newest time step whose code was accepted: that code and older ones are refused as replays. */
  lastUsedStep: number | null
  lastUsedAt: string | null
  /**
   * The user's token runs this many steps ahead (+) or behind (-) the host's clock: the window
   * is centred on it (login.ts). Absent = 0. Logins keep it within ±MAX_AUTO_DRIFT steps;
   * `user:secret:resync` may store up to a day either way.
   */
  driftSteps?: number
  failures: number
  lockedUntil: string | null
  recovery: HashedCodes | null
  bypass: {salt: string; hash: string; expiresAt: string} | null
  /** A renewed secret that waits for its first code (`user:secret:confirm`). */
  pending: Enrolment | null
}

export interface Doc {
  version: number
  settings: Settings
  /** A Map, so that names like `__proto__` are ordinary keys. */
  users: Map<string, UserRecord>
}

export const emptyDoc = (): Doc => ({version: STORE_VERSION, settings: {...DEFAULT_SETTINGS}, users: new Map()})

export const newUserRecord = (): UserRecord => ({
  secret: null,
  interval: 30,
  digits: 6,
  algorithm: 'SHA1',
  createdAt: null,
  lastUsedStep: null,
  lastUsedAt: null,
  failures: 0,
  lockedUntil: null,
  recovery: null,
  bypass: null,
  pending: null,
})

/** A record with nothing left in it is dropped, so `user:list` shows only users with state. */
export const isEmptyRecord = (r: UserRecord): boolean => !r.secret && !r.pending && !r.recovery && !r.bypass && r.failures === 0 && !r.lockedUntil

/** What `twofactor:status` reports: settings and user counts (every backend can tell; the command and the fast path print it). */
export interface StatusSummary {
  settings: Settings
  total: number
  configured: number
}

/** The summary from a full read, for a backend without a cheaper one. */
export const summaryOf = (doc: Doc): StatusSummary => ({
  settings: doc.settings,
  total: doc.users.size,
  configured: [...doc.users.values()].filter((u) => u.secret).length,
})
