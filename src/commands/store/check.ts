import {BaseCommand} from '../../base-command.js'
import {checkPrivateFile} from '../../store/files.js'

export default class Check extends BaseCommand<typeof Check> {
  static override description = 'validate the store, its key and backup (exit 0 valid, 3 not)'
  static override examples = ['<%= config.bin %> store:check', 'sudo <%= config.bin %> store:check --store /var/lib/tfactl/store.json --json']
  static override audited = false

  async run() {
    const doc = await this.store.read()
    const {key, backup} = this.store.files
    const exists = checkPrivateFile(this.store.path)
    checkPrivateFile(key)
    checkPrivateFile(backup)
    this.say(exists ? `${this.store.path}: valid (${doc.users.size} users)` : `${this.store.path}: does not exist yet (defaults apply)`)
    return {path: this.store.path, valid: true, exists, version: doc.version, users: doc.users.size}
  }
}
