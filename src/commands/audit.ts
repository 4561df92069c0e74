import {Flags} from '@oclif/core'
import {BaseCommand} from '../base-command.js'
import {usageError} from '../core/errors.js'
import {checkUsername} from '../core/validate.js'

export default class Audit extends BaseCommand<typeof Audit> {
  static override description = 'show the audit trail (audit.log beside a file store; a table of a database store, with the host of each event): who did what to whom'
  static override examples = ['<%= config.bin %> audit', '<%= config.bin %> audit --user alice --since 2026-11-01T00:00:00Z --json']
  static override audited = false
  static override flags = {
    user: Flags.string({description: 'only events about this user'}),
    since: Flags.string({description: 'only events at or after this ISO 8601 time'}),
  }

  async run() {
    const user = this.flags.user === undefined ? undefined : checkUsername(this.flags.user)
    const since = this.flags.since === undefined ? undefined : Date.parse(this.flags.since)
    if (since !== undefined && Number.isNaN(since)) throw usageError(`--since ${JSON.stringify(this.flags.since)} is not an ISO 8601 time (e.g. 2026-11-01T00:00:00Z)`)
    const events = (await this.store.readAudit()).filter(
      (e) => (user === undefined || e.user === user) && (since === undefined || Date.parse(e.time) >= since),
    )
    for (const e of events)
      this.say(`${e.time}  ${e.host ? `${e.host}  ` : ''}uid=${e.actor.uid}${e.actor.sudoUser ? ` (sudo ${e.actor.sudoUser})` : ''}  ${e.command}  ${e.user ?? '-'}  ${e.outcome}${e.reason ? ` (${e.reason})` : ''}${e.client ? `  client=${e.client}` : ''}`)
    return {events}
  }
}
