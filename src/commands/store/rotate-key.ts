import {BaseCommand} from '../../base-command.js'

/** `store:rotate-key --json`. */
export interface RotateResult {
  rotated: true
  /** The users whose secrets were sealed again. */
  users: string[]
  changed: true
}

export default class RotateKey extends BaseCommand<typeof RotateKey> {
  static override description = `seal every user's secret under a new key, in one crash-safe step; other stores are not touched

A file store's key is <store>.key beside it; a database store's is its key file (--key-file), and
every other host needs the new key file afterwards (until then they exit 3).`
  static override examples = ['sudo <%= config.bin %> store:rotate-key', 'sudo <%= config.bin %> store:rotate-key --json']

  async run(): Promise<RotateResult> {
    const {users, key} = await this.store.rotateKey()
    this.say(`new key in ${key}; ${users.length} user(s) re-sealed${users.length > 0 && users.length <= 20 ? `: ${users.join(', ')}` : ''}`)
    return {rotated: true, users, changed: true}
  }
}
