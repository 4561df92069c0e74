import {secretKey} from './codes.js'
import {setDrift} from './login.js'
import {maxDriftSteps, type UserRecord} from './model.js'
import {matchPair, timeStep} from './totp.js'
import {normalizeCode} from './validate.js'

export type Resync = {drift: number; step: number} | {refused: 'code_invalid' | 'code_replayed'}

/**
 * Where a user's token is: the step pair whose codes are `first` then `second` (two consecutive
 * codes), looked for up to a day either side of the host's clock. Two codes in a row make a chance
 * match of a 6-digit pair about one in 170 million over that day. The drift is the second code's
 * step minus the host's current step; codes at or before the last accepted step are replays.
 */
export function findResync(user: UserRecord, first: string, second: string, now: number): Resync {
  const key = secretKey(user.secret ?? '')
  const [a, b] = [normalizeCode(first), normalizeCode(second)]
  const shape = new RegExp(`^[0-9]{${user.digits}}$`)
  if (!key || !shape.test(a) || !shape.test(b)) return {refused: 'code_invalid'}
  const params = {key, interval: user.interval, digits: user.digits, algorithm: user.algorithm}
  const found = matchPair(params, a, b, now, maxDriftSteps(user.interval))
  if (found === undefined) return {refused: 'code_invalid'}
  if (user.lastUsedStep !== null && found - 1 <= user.lastUsedStep) return {refused: 'code_replayed'} // absolute steps, as at login
  return {drift: found - timeStep(now, user.interval), step: found}
}

/** Records a resync: the drift, and both codes as used. */
export function applyResync(user: UserRecord, found: {drift: number; step: number}, now: number): void {
  setDrift(user, found.drift)
  user.lastUsedStep = found.step
  user.lastUsedAt = new Date(now).toISOString()
}
