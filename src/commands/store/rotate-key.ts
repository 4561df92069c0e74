import {BaseCommand} from '../../base-command.js'

export default class RotateKey extends BaseCommand<typeof RotateKey> {
  static override description = "seal every user's secret under a new key (<store>.key), in one crash-safe step; other stores are not touched"
  static override examples = ['sudo <%= config.bin %> store:rotate-key', 'sudo <%= config.bin %> store:rotate-key --json']

  async run() {
    const {users} = await this.store.rotateKey()
    this.say(`new key in ${this.store.files.key}; ${users.length} user(s) re-sealed${users.length > 0 && users.length <= 20 ? `: ${users.join(', ')}` : ''}`)
    return {rotated: true, users, changed: true}
  }
}
