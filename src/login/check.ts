import {setTimeout as sleep} from 'node:timers/promises'
import {applyEffect, decideLogin, type Method, type Reason, type Service} from '../core/login.js'
import {getOrCreate, tidy} from '../core/users.js'
import type {StoreBackend} from '../store/backend.js'
import {paint} from '../ui/colour.js'

export interface LoginInput {
  user: string
  service: Service
  method: Method
  code?: string
}

export interface LoginResult {
  user: string
  service: Service
  method: Method
  allowed: boolean
  reason: Reason
  setupPrompt: boolean
  skewSteps?: number
}

/**
 * The whole of `login:check` after its input is parsed: decide under the store lock, record
 * the outcome, wait the fail delay on a failed code. Shared by the oclif command and the fast
 * entry point (bin/run.js), so both answer alike.
 */
export async function checkLogin(store: Pick<StoreBackend, 'login'>, input: LoginInput): Promise<{result: LoginResult; lines: string[]}> {
  const {user, service, method, code} = input
  const d = await store.login(user, (doc) => {
    const now = Date.now()
    const record = doc.users.get(user)
    const decision = decideLogin(doc.settings, record, {service, method, code, now})
    if (decision.effect.kind !== 'none') {
      applyEffect(doc.settings, getOrCreate(doc, user), decision.effect, now)
      tidy(doc, user)
    }
    return {...decision, failDelay: doc.settings.failDelay, interval: record?.interval ?? 30}
  })
  if (!d.allowed && code !== undefined) await sleep(d.failDelay)
  const lines = [`${user}: ${d.allowed ? paint('green', 'allowed') : paint('red', 'denied')} (${d.reason})`] // for stdout, not --json
  if (d.skewSteps) lines.push(`note: the clock on one side is off by about ${Math.abs(d.skewSteps) * d.interval} seconds`)
  if (d.setupPrompt) lines.push(`${user} has no 2FA secret yet: set one up with tfactl user:secret:renew`)
  const result: LoginResult = {user, service, method, allowed: d.allowed, reason: d.reason, setupPrompt: d.setupPrompt}
  if (d.skewSteps) result.skewSteps = d.skewSteps
  return {result, lines}
}
