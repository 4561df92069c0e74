import {type Doc, type Enrolment, isEmptyRecord, newUserRecord, type UserRecord} from './model.js'

export const getOrCreate = (doc: Doc, user: string): UserRecord => {
  let record = doc.users.get(user)
  if (!record) doc.users.set(user, (record = newUserRecord()))
  return record
}

/** Drops records that hold nothing any more. */
export const tidy = (doc: Doc, user: string): void => {
  const record = doc.users.get(user)
  if (record && isEmptyRecord(record)) doc.users.delete(user)
}

/**
 * Makes `enrolment` the user's active secret. A new secret starts clean: its replay state,
 * failure count and lockout are reset, and recovery codes made for the old one are void.
 */
export function activate(doc: Doc, user: string, enrolment: Enrolment): void {
  const record = getOrCreate(doc, user)
  Object.assign(record, enrolment, {lastUsedStep: null, failures: 0, lockedUntil: null, recovery: null, pending: null})
  delete record.driftSteps // a new secret (a new token) has drift of its own
}

/** Removes the user's secret (and everything tied to it). Returns whether there was one. */
export function removeSecret(doc: Doc, user: string): boolean {
  const record = doc.users.get(user)
  if (!record || (!record.secret && !record.pending && !record.recovery)) return false
  Object.assign(record, newUserRecord(), {bypass: record.bypass})
  delete record.driftSteps
  tidy(doc, user)
  return true
}

export const enrolmentOf = (record: UserRecord): Enrolment | undefined =>
  record.secret && record.createdAt
    ? {secret: record.secret, interval: record.interval, digits: record.digits, algorithm: record.algorithm, createdAt: record.createdAt}
    : undefined

export const configuredCount = (doc: Doc): number => [...doc.users.values()].filter((u) => u.secret).length
