import {BaseCommand} from '../../base-command.js'
import {paint} from '../../ui/colour.js'

/** `user:list --json`. */
export interface ListResult {
  users: {
    user: string
    configured: boolean
    interval: number
    digits: number
    lastUsedAt: string | null
    recoveryCodesLeft: number
    pending: boolean
    lockedOut: boolean
  }[]
}

export default class List extends BaseCommand<typeof List> {
  static override description = 'list every user the store knows, with their 2FA state'
  static override audited = false
  static override examples = ['<%= config.bin %> user:list', '<%= config.bin %> user:list --json']

  async run(): Promise<ListResult> {
    const doc = await this.store.read()
    const now = Date.now()
    const users = [...doc.users].map(([user, r]) => ({
      user,
      configured: Boolean(r.secret),
      interval: r.interval,
      digits: r.digits,
      lastUsedAt: r.lastUsedAt,
      recoveryCodesLeft: r.recovery?.hashes.length ?? 0,
      pending: Boolean(r.pending),
      lockedOut: Boolean(r.lockedUntil && Date.parse(r.lockedUntil) > now),
    }))
    if (users.length === 0) this.say('no users with 2FA state')
    for (const u of users) {
      const state = [u.configured ? `${u.digits} digits / ${u.interval} s` : 'no secret', u.pending && 'pending', u.lockedOut && paint('red', 'LOCKED OUT')]
      this.say(`${u.user.padEnd(20)} ${state.filter(Boolean).join(', ')}  last used: ${u.lastUsedAt ?? 'never'}  recovery codes: ${u.recoveryCodesLeft}`)
    }
    return {users}
  }
}
