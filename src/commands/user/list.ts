import {BaseCommand} from '../../base-command.js'
import type {UserRecord} from '../../core/model.js'
import {paint} from '../../ui/colour.js'

export default class List extends BaseCommand<typeof List> {
  static override description = 'list every user the store knows, with their 2FA state'
  static override audited = false
  static override examples = ['<%= config.bin %> user:list', '<%= config.bin %> user:list --json']

  async run() {
    const now = Date.now()
    const json = this.jsonEnabled()
    const users: Array<ReturnType<typeof entry>> = []
    // A batch at a time where the store can (a database): each batch's records are dropped once
    // listed, only these summaries are kept (for --json).
    const take = (batch: Iterable<[string, UserRecord]>) => {
      for (const [user, r] of batch) {
        const u = entry(user, r, now)
        users.push(u)
        if (json) continue
        const state = [u.configured ? `${u.digits} digits / ${u.interval} s` : 'no secret', u.pending && 'pending', u.lockedOut && paint('red', 'LOCKED OUT')]
        this.say(`${u.user.padEnd(20)} ${state.filter(Boolean).join(', ')}  last used: ${u.lastUsedAt ?? 'never'}  recovery codes: ${u.recoveryCodesLeft}`)
      }
    }
    if (this.store.eachUser) await this.store.eachUser(take)
    else take((await this.store.read()).users)
    if (users.length === 0) this.say('no users with 2FA state')
    return {users}
  }
}

const entry = (user: string, r: UserRecord, now: number) => ({
  user,
  configured: Boolean(r.secret),
  interval: r.interval,
  digits: r.digits,
  lastUsedAt: r.lastUsedAt,
  recoveryCodesLeft: r.recovery?.hashes.length ?? 0,
  pending: Boolean(r.pending),
  lockedOut: Boolean(r.lockedUntil && Date.parse(r.lockedUntil) > now),
})
