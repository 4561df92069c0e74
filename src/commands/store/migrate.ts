import {Flags} from '@oclif/core'
import {existsSync} from 'node:fs'
import {resolve} from 'node:path'
import {BaseCommand} from '../../base-command.js'
import {usageError} from '../../core/errors.js'
import {DEFAULT_SETTINGS} from '../../core/model.js'
import {sameSettings} from '../../core/settings.js'
import {isDatabaseUrl} from '../../store/backend.js'
import {FileBackend} from '../../store/file/backend.js'

export default class Migrate extends BaseCommand<typeof Migrate> {
  static override description = `copy a file store into the store --store names (e.g. a PostgreSQL database)

Everything moves: settings, users, secrets (re-sealed under the destination's key), replay
state, failure counts, lockouts, recovery codes, pending secrets. The file store (and its key
beside it) is only read. The destination must have no users yet, else exit 2 and nothing is
written; settings it already has (a twofactor:enable run first) are replaced by the file store's,
with a warning. A pam_oath users file setting is dropped for a database store (SSH codes then go
through tfactl radius:serve).`
  static override examples = ['sudo <%= config.bin %> store:migrate --from /var/lib/tfactl/store.json --store postgresql://tfactl@db.example.net/tfactl --json']
  static override flags = {
    from: Flags.string({description: 'the file store to copy (its key beside it)', required: true}),
  }

  async run() {
    const from = resolve(this.flags.from)
    if (isDatabaseUrl(this.flags.from)) throw usageError('--from: give the path of a file store (store.json)')
    if (!existsSync(from)) throw usageError(`--from ${from}: no such store file`)
    if (from === this.store.spec) throw usageError(`--from ${from} is the destination store itself`)
    const source = await new FileBackend(from).read()
    let dropped: string | null = null
    let settingsReplaced = false
    const users = await this.store.update((doc) => {
      // Users are what must not be mixed; settings alone (the set-up guide's twofactor:enable
      // before the migration) give way to the file store's, which are the ones in use.
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
