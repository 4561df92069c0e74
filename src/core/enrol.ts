import {newSecret, secretKey} from './codes.js'
import type {Digits, Enrolment, Interval} from './model.js'
import {matchStep} from './totp.js'
import {otpauthUri} from './uri.js'

export const newEnrolment = (interval: Interval, digits: Digits, now: number): Enrolment => ({
  secret: newSecret(),
  interval,
  digits,
  algorithm: 'SHA1',
  createdAt: new Date(now).toISOString(),
})

/** What a user needs to add the secret to an app; also the JSON shape of renew/show. */
export const enrolmentView = (user: string, e: Enrolment, issuer: string, host: string) => ({
  user,
  secret: e.secret,
  uri: otpauthUri({issuer, user, host, secret: e.secret, interval: e.interval, digits: e.digits, algorithm: e.algorithm}),
  interval: e.interval,
  digits: e.digits,
  algorithm: e.algorithm,
})

export type EnrolmentView = ReturnType<typeof enrolmentView>

/** The step whose code `code` is for this enrolment, within `window` steps of now (first codes). */
export function matchEnrolment(e: Enrolment, code: string, nowMs: number, window: number): number | undefined {
  const key = secretKey(e.secret)
  return key && matchStep({key, interval: e.interval, digits: e.digits, algorithm: e.algorithm}, code, nowMs, window)
}
