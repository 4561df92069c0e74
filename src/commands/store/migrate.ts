import {Flags} from '@oclif/core'
import {existsSync} from 'node:fs'
import {resolve} from 'node:path'
import {BaseCommand} from '../../base-command.js'
import {usageError} from '../../core/errors.js'
import {DEFAULT_SETTINGS, type Doc} from '../../core/model.js'
import {sameSettings} from '../../core/settings.js'
import {isDatabaseUrl, openStore} from '../../store/backend.js'
import {resolveStore} from '../../store/config.js'

export default class Migrate extends BaseCommand<typeof Migrate> {
  static override description = `copy a store (a file or a PostgreSQL database) into the store --store names

Everything moves: settings, users, secrets (re-sealed under the destination's key), replay
state, failure counts, lockouts, recovery codes, pending secrets. The source (a file store and
its key beside it, or a database) is only read. The destination must have no users yet, else
exit 2 and nothing is written; settings it already has (a twofactor:enable run first) are
replaced by the source's, with a warning. A pam_oath users file setting is dropped for a database
store (SSH codes then go through tfactl radius:serve).`
  static override examples = ['sudo <%= config.bin %> store:migrate --from /var/lib/tfactl/store.json --store postgresql://tfactl@db.example.net/tfactl --json']
  static override flags = {
    from: Flags.string({description: 'the store to copy: a file (its key beside it) or a PostgreSQL URL', required: true}),
    'from-key-file': Flags.string({description: "key that seals the secrets of a database --from [default: the destination's key file]"}),
  }

  async run() {
    const given = this.flags.from
    const from = isDatabaseUrl(given) ? given : resolve(given)
    if (!isDatabaseUrl(given) && !existsSync(from)) throw usageError(`--from ${from}: no such store file`)
    if (from === this.store.spec) throw usageError(`--from ${from} is the destination store itself`)
    // The source opens through the seam like any store: a file (its key beside it) or a database
    // (sealed with --from-key-file, else the destination's key file).
    const keyFile = this.flags['from-key-file'] ?? resolveStore({store: this.flags.store, keyFile: this.flags['key-file']}).keyFile
    const sourceStore = await openStore(from, {keyFile})
    let source: Doc
    try {
      source = await sourceStore.read()
    } finally {
      await sourceStore.close()
    }
    let dropped: string | null = null
    let settingsReplaced = false
    const users = await this.store.update((doc) => {
      // Users are what must not be mixed; settings alone (the set-up guide's twofactor:enable
      // before the migration) give way to the source's, which are the ones in use.
      if (doc.users.size > 0)
        throw usageError(
          `${this.store.description} already has ${doc.users.size} user(s): store:migrate only fills a store without users (point --store at a new database)`,
        )
      const settings = {...source.settings}
      if (settings.oathFile && !this.store.localOathFile) {
        dropped = settings.oathFile
        settings.oathFile = null
      }
      settingsReplaced = !sameSettings(doc.settings, DEFAULT_SETTINGS) && !sameSettings(doc.settings, settings)
      doc.settings = settings
      for (const [name, record] of source.users) doc.users.set(name, record)
      return source.users.size
    })
    this.say(`${from} → ${this.store.description}: ${users} user(s) copied, with settings, replay state, lockouts and recovery codes`)
    if (settingsReplaced) this.warning(`the settings ${this.store.description} had were replaced by ${from}'s (check them with tfactl twofactor:status)`)
    if (dropped) this.warning(`${dropped} (pam_oath users file) is not used with a database store: serve SSH codes with tfactl radius:serve`)
    return {from, users, settingsReplaced, changed: true}
  }
}
