import {findCode, secretKey} from './codes.js'
import {MAX_AUTO_DRIFT, maxDriftSteps, type Settings, type UserRecord} from './model.js'
import {matchStep, timeStep} from './totp.js'
import {normalizeCode} from './validate.js'

export type Service = 'ui' | 'ssh'
export type Method = 'password' | 'key'

export type Reason =
  | 'twofactor_disabled'
  | 'key_auth'
  | 'ssh_2fa_off'
  | 'no_secret'
  | 'code_accepted'
  | 'recovery_code_accepted'
  | 'bypass_accepted'
  | 'code_required'
  | 'code_invalid'
  | 'code_replayed'
  | 'locked_out'
  | 'stig_requires_2fa'

export interface LoginRequest {
  service: Service
  method: Method
  code?: string
  now: number
}

/** What the check changes in the user's record; applied under the store lock. */
export type Effect =
  | {kind: 'none'}
  /** `drift`: the user's token offset to record (steps from the host's clock). */
  | {kind: 'accepted'; step: number; drift: number}
  | {kind: 'recovery_used'; index: number}
  | {kind: 'bypass_used'}
  | {kind: 'failed'}

export interface Decision {
  allowed: boolean
  reason: Reason
  setupPrompt: boolean
  /** The accepted code's step minus the host's current step, when it was not the current one. */
  skewSteps?: number
  effect: Effect
}

const allow = (reason: Reason, extra: Partial<Decision> = {}): Decision => ({allowed: true, reason, setupPrompt: false, effect: {kind: 'none'}, ...extra})
const deny = (reason: Reason, effect: Effect = {kind: 'none'}): Decision => ({allowed: false, reason, setupPrompt: false, effect})

export const isLocked = (user: UserRecord | undefined, now: number): boolean => Boolean(user?.lockedUntil && Date.parse(user.lockedUntil) > now)

function bypassMatches(user: UserRecord | undefined, code: string, now: number): boolean {
  const bypass = user?.bypass
  if (!bypass || Date.parse(bypass.expiresAt) <= now) return false
  return findCode({salt: bypass.salt, hashes: [bypass.hash]}, code) === 0
}

/**
 * The 2FA step of a login, decided from the global settings and the user's record alone.
 * Each line is one rule of the documentation; the test table mirrors them.
 */
// biome-ignore format: one aligned row per rule, like the documentation
export function decideLogin(cfg: Settings, user: UserRecord | undefined, req: LoginRequest): Decision {
  const {service: svc, method, now} = req
  const code = req.code === undefined ? undefined : normalizeCode(req.code)
  if (!cfg.enabled)                          return allow('twofactor_disabled')
  if (svc === 'ssh' && method === 'key')     return allow('key_auth')
  if (svc === 'ssh' && !cfg.ssh)             return allow('ssh_2fa_off')
  if (code && bypassMatches(user, code, now)) return allow('bypass_accepted', {effect: {kind: 'bypass_used'}})
  if (isLocked(user, now))                   return deny('locked_out')
  if (!user?.secret)                         return svc === 'ui' && cfg.stig
                                               ? deny('stig_requires_2fa')
                                               : allow('no_secret', {setupPrompt: svc === 'ui'})
  if (code === undefined)                    return deny('code_required')
  return checkCode(cfg, user, code, now)
}

/** Checks a code outside a login (self-service proof): lockout applies, bypass codes do not. */
export function verifyCode(cfg: Settings, user: UserRecord, code: string, now: number): Decision {
  if (isLocked(user, now)) return deny('locked_out')
  return checkCode(cfg, user, normalizeCode(code), now)
}

/**
 * The drift to record after a code `observed` steps from the host's clock was accepted: the
 * observed offset, kept within ±MAX_AUTO_DRIFT steps, or within the recorded drift when root's
 * resync put it further (a login never moves it further away than that).
 */
export function nextDrift(recorded: number, observed: number): number {
  const bound = Math.max(MAX_AUTO_DRIFT, Math.abs(recorded))
  return Math.max(-bound, Math.min(bound, observed))
}

/** A record's drift, as the window uses it: never beyond a day (a hand-edited store cannot widen the search). */
export const driftOf = (user: UserRecord): number => {
  const limit = maxDriftSteps(user.interval)
  return Math.max(-limit, Math.min(limit, user.driftSteps ?? 0))
}

function checkCode(cfg: Settings, user: UserRecord, code: string, now: number): Decision {
  const key = secretKey(user.secret ?? '')
  if (key && /^\d+$/.test(code) && code.length === user.digits) {
    const params = {key, interval: user.interval, digits: user.digits, algorithm: user.algorithm}
    const drift = driftOf(user)
    const step = matchStep(params, code, now, cfg.window, drift) // the window is centred on the token's drift
    if (step !== undefined) {
      if (user.lastUsedStep !== null && step <= user.lastUsedStep) return deny('code_replayed') // absolute steps
      const skew = step - timeStep(now, user.interval)
      return allow('code_accepted', {effect: {kind: 'accepted', step, drift: nextDrift(drift, skew)}, ...(skew ? {skewSteps: skew} : {})})
    }
  }
  const index = user.recovery ? findCode(user.recovery, code) : -1
  if (index >= 0) return allow('recovery_code_accepted', {effect: {kind: 'recovery_used', index}})
  return deny('code_invalid', {kind: 'failed'})
}

/** Records the outcome of a check in the user's record (counts, lockout, replay state). */
export function applyEffect(cfg: Settings, user: UserRecord, effect: Effect, now: number): void {
  const at = new Date(now).toISOString()
  switch (effect.kind) {
    case 'none':
      return
    case 'accepted':
      user.lastUsedStep = effect.step
      user.lastUsedAt = at
      setDrift(user, effect.drift)
      break
    case 'recovery_used':
      user.recovery!.hashes.splice(effect.index, 1)
      user.lastUsedAt = at
      break
    case 'bypass_used':
      user.bypass = null
      user.lastUsedAt = at
      break
    case 'failed':
      if (user.lockedUntil && Date.parse(user.lockedUntil) <= now) [user.failures, user.lockedUntil] = [0, null]
      user.failures += 1
      if (cfg.maxFailures > 0 && user.failures >= cfg.maxFailures) user.lockedUntil = new Date(now + cfg.lockout * 1000).toISOString()
      return
  }
  user.failures = 0
  user.lockedUntil = null
}

/** Stores a drift; 0 is stored as no field at all, so records of users without drift keep their shape. */
export function setDrift(user: UserRecord, drift: number): void {
  if (drift === 0) delete user.driftSteps
  else user.driftSteps = drift
}
