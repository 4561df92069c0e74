import {Flags} from '@oclif/core'
import {BaseCommand} from '../base-command.js'
import {usageError} from '../core/errors.js'
import {checkUsername} from '../core/validate.js'
import {type AuditEvent, escapeControls} from '../store/audit.js'

/** `audit --json`. */
export interface AuditResult {
  events: AuditEvent[]
}

export default class Audit extends BaseCommand<typeof Audit> {
  static override description = `show the audit trail (<store>.audit.log, or a database store's audit table with each event's host): who did what to whom

Events written before side files were named after the store are read from the directory's
shared audit.log too. Names are shown with control characters escaped; --json gives them exactly.`
  static override examples = ['<%= config.bin %> audit', '<%= config.bin %> audit --user alice --since 2026-11-01T00:00:00Z --json']
  static override audited = false
  static override flags = {
    user: Flags.string({description: 'only events about this user'}),
    since: Flags.string({description: 'only events at or after this ISO 8601 time'}),
  }

  async run(): Promise<AuditResult> {
    const user = this.flags.user === undefined ? undefined : checkUsername(this.flags.user)
    const since = this.flags.since === undefined ? undefined : Date.parse(this.flags.since)
    if (since !== undefined && Number.isNaN(since))
      throw usageError(`--since ${JSON.stringify(this.flags.since)} is not an ISO 8601 time (e.g. 2026-11-01T00:00:00Z)`)
    const events = (await this.store.readAudit()).filter((e) => (user === undefined || e.user === user) && (since === undefined || Date.parse(e.time) >= since))
    const x = (s: unknown) => escapeControls(String(s))
    for (const e of events)
      this.say(
        `${x(e.time)}  ${e.host ? `${x(e.host)}  ` : ''}uid=${x(e.actor?.uid)}${e.actor?.sudoUser ? ` (sudo ${x(e.actor.sudoUser)})` : ''}  ${x(e.command)}  ${e.user === null ? '-' : x(e.user)}  ${x(e.outcome)}${e.reason ? ` (${x(e.reason)})` : ''}${e.client ? `  client=${x(e.client)}` : ''}`,
      )
    return {events}
  }
}
