import {Flags} from '@oclif/core'
import {resolve} from 'node:path'
import {BaseCommand} from '../../base-command.js'

export default class Restore extends BaseCommand<typeof Restore> {
  static override description = `put a valid backup back as the store (default <store>.bak); the current store is moved aside, never deleted

The backup is validated first, with the key: users whose secrets the key cannot open are
reported (undecryptable). Exit 3, nothing changed, when there is no valid backup.`
  static override examples = [
    'sudo <%= config.bin %> store:restore',
    'sudo <%= config.bin %> store:restore --from /var/lib/tfactl/store.json.broken-20261130T101500Z --json',
  ]
  static override flags = {
    from: Flags.string({description: 'the backup to put back [default: <store>.bak]'}),
  }

  async run() {
    const repair = this.repair('store:restore')
    const from = resolve(this.flags.from ?? repair.backup)
    const report = await repair.restore(from)
    for (const w of report.warnings) this.warning(w)
    for (const path of report.movedAside) this.say(`moved aside: ${path}`)
    this.say(`restored ${this.store.description} from ${from} (${report.users} user(s))`)
    // The pam_oath users file follows the restored store (an update that changes nothing else).
    let usersFile = null
    try {
      await this.store.update(() => undefined)
      const sync = this.store.oathSync
      if (sync) {
        usersFile = {path: sync.path, changed: sync.changed, users: sync.users}
        this.say(`users file: ${sync.path} (${sync.users.length} user(s)${sync.changed ? ', written' : ''})`)
      }
    } catch (error) {
      const problem = `the pam_oath users file was not brought in line with the restored store (${(error as Error).message}): run tfactl ssh:sync`
      report.warnings.push(problem)
      this.warning(problem)
    }
    if (report.enabled) this.say('2FA is on in the restored store; to turn it off: tfactl twofactor:disable')
    this.auditOutcome = {outcome: 'ok', reason: 'restored'}
    return {...report, usersFile, changed: true}
  }
}
