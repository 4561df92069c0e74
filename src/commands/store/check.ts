import {BaseCommand} from '../../base-command.js'
import type {StoreCheck} from '../../store/backend.js'

/** `store:check --json`. */
export type CheckResult = StoreCheck

export default class Check extends BaseCommand<typeof Check> {
  static override description = 'validate the store, its key and backup (exit 0 valid, 3 not)'
  static override examples = ['<%= config.bin %> store:check', 'sudo <%= config.bin %> store:check --store /var/lib/tfactl/store.json --json']
  static override audited = false

  async run(): Promise<CheckResult> {
    const result = await this.store.check()
    const {path, exists, users, schema} = result
    this.say(exists ? `${path}: valid (${users} users${schema ? `, schema version ${schema}` : ''})` : `${path}: does not exist yet (defaults apply)`)
    return result
  }
}
