import {matchEnrolment} from './enrol.js'
import {applyEffect, isLocked, verifyCode} from './login.js'
import type {Doc} from './model.js'

export const proofNeeded = (user: string): string => `${user} already has a 2FA secret: prove it is you with --code (a current code or a recovery code)`

/**
 * A user renewing or removing their own secret under sudo must prove they hold it: a current
 * code or a recovery code. Root acting directly, and a first enrolment, need no proof.
 * Returns why the proof failed (the attempt is recorded like a failed login), or undefined.
 */
export function checkSelfService(doc: Doc, target: string, invoker: string | undefined, code: string | undefined, now: number): string | undefined {
  const record = doc.users.get(target)
  if (invoker !== target || !record?.secret) return undefined
  if (code === undefined) return proofNeeded(target)
  const decision = verifyCode(doc.settings, record, code, now)
  applyEffect(doc.settings, record, decision.effect, now)
  return decision.allowed ? undefined : `the code given with --code was refused (${decision.reason}); ${target}'s secret is unchanged`
}

/**
 * The one self-service rule every command applies inside its store update: each target that
 * needs a proof is checked first; on a refusal the failed attempt is counted (like a failed
 * login) and `change` never runs, so nothing else is written. `targets` are the users the
 * command would change, read from the locked document.
 */
export function guardSelfService<T>(
  doc: Doc,
  targets: readonly string[],
  invoker: string | undefined,
  code: string | undefined,
  now: number,
  change: () => T,
): {refusal: string} | {result: T} {
  for (const target of targets) {
    const refusal = checkSelfService(doc, target, invoker, code, now)
    if (refusal) return {refusal}
  }
  return {result: change()}
}

/**
 * `user:secret:confirm`: the first code of the pending secret activates it. When users confirm
 * their own under sudo, that code is their proof, so the same rule holds: a locked-out user is
 * refused, and a wrong code is counted like a failed login (it cannot be guessed without limit)
 * with nothing else written. Root acting directly is neither refused nor counted.
 * Returns the step the code is for, or why it was not taken; undefined when nothing is pending.
 */
export function confirmPending(
  doc: Doc,
  target: string,
  invoker: string | undefined,
  code: string,
  now: number,
): {step: number} | {refused: 'locked_out' | 'code_invalid'} | undefined {
  const record = doc.users.get(target)
  if (!record?.pending) return undefined
  const selfService = invoker === target
  if (selfService && isLocked(record, now)) return {refused: 'locked_out'}
  const step = matchEnrolment(record.pending, code, now, doc.settings.window)
  if (step !== undefined) return {step}
  if (selfService) applyEffect(doc.settings, record, {kind: 'failed'}, now)
  return {refused: 'code_invalid'}
}
