import {BaseCommand} from '../../base-command.js'

export default class RotateKey extends BaseCommand<typeof RotateKey> {
  static override description = `seal every secret under a new key (tfactl.key), in one crash-safe step

With a database store, every other host needs the new key file afterwards (until then they exit 3).`
  static override examples = ['sudo <%= config.bin %> store:rotate-key']

  async run() {
    const {secrets, key} = await this.store.rotateKey()
    this.say(`new key in ${key}; ${secrets} secret(s) re-encrypted`)
    return {rotated: true, secrets, changed: true}
  }
}
