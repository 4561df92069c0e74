import {Flags} from '@oclif/core'
import {BaseCommand} from '../../base-command.js'
import {newUserRecord, type UserRecord} from '../../core/model.js'
import {groupMembers} from '../../core/groups.js'
import {nss} from '../../os/nss.js'
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
    /** How far the user's token runs from the clock, in steps (0: in step). */
    driftSteps: number
    /** With --group: whether the user is a member (members first, then enrolled users who are not). */
    inGroup?: boolean
  }[]
}

export default class List extends BaseCommand<typeof List> {
  static override description = `list every user the store knows, with their 2FA state

With --group: the group's members (enrolled or not), then the enrolled users who are not in it
(inGroup false), for a clean-up script.`
  static override audited = false
  static override examples = ['<%= config.bin %> user:list', '<%= config.bin %> user:list --json', '<%= config.bin %> user:list --group operators --json']
  static override flags = {
    group: Flags.string({description: 'list this Unix group as NSS sees it, and the enrolled users who are not in it'}),
  }

  async run(): Promise<ListResult> {
    const members = this.flags.group === undefined ? undefined : groupMembers(this.flags.group, nss)
    const now = Date.now()
    const json = this.jsonEnabled()
    const users: Entry[] = []
    const show = (u: Entry) => {
      if (json) return
      const state = [
        u.configured ? `${u.digits} digits / ${u.interval} s` : 'no secret',
        u.pending && 'pending',
        u.lockedOut && paint('red', 'LOCKED OUT'),
        u.inGroup === false && paint('yellow', 'not in the group'),
        u.driftSteps !== 0 && `token ${u.driftSteps > 0 ? '+' : ''}${u.driftSteps} steps off`,
      ]
      this.say(`${u.user.padEnd(20)} ${state.filter(Boolean).join(', ')}  last used: ${u.lastUsedAt ?? 'never'}  recovery codes: ${u.recoveryCodesLeft}`)
    }
    if (members === undefined) {
      // A batch at a time where the store can: each batch's records are dropped once listed,
      // only these summaries are kept (for --json).
      const take = (batch: Iterable<[string, UserRecord]>) => {
        for (const [user, r] of batch) {
          const u = entry(user, r, now)
          users.push(u)
          show(u)
        }
      }
      if (this.store.eachUser) await this.store.eachUser(take)
      else take((await this.store.read()).users)
      if (users.length === 0) this.say('no users with 2FA state')
      return {users}
    }
    const doc = await this.store.read()
    const inGroup = new Set(members)
    const strays = [...doc.users].filter(([user, r]) => !inGroup.has(user) && (r.secret || r.pending))
    users.push(
      ...members.map((user) => ({...entry(user, doc.users.get(user) ?? newUserRecord(), now), inGroup: true})),
      ...strays.map(([user, r]) => ({...entry(user, r, now), inGroup: false})),
    )
    if (users.length === 0) this.say(`group ${this.flags.group} has no members and no one else is enrolled`)
    for (const u of users) show(u)
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
  driftSteps: r.driftSteps ?? 0,
})

type Entry = ReturnType<typeof entry> & {inGroup?: boolean}
