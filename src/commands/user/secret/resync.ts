import {Flags} from '@oclif/core'
import {requiredUsernameArg} from '../../../args.js'
import {BaseCommand} from '../../../base-command.js'
import {readCodeLines} from '../../../code-input.js'
import {EXIT, TfaError, usageError} from '../../../core/errors.js'
import {applyResync, findResync} from '../../../core/resync.js'

export default class Resync extends BaseCommand<typeof Resync> {
  static override description = `find how far a user's hardware token's clock has drifted, from two consecutive codes (root only)

Looks up to a day either side of this host's clock for the two codes, one after the other, and
stores the offset: that user's window is then centred on it. Logins keep following small drift
themselves (up to 10 steps); this is for a token that drifted further.`
  static override examples = [
    'sudo <%= config.bin %> user:secret:resync alice --code 123456 --code 654321',
    'printf "%s\\n%s\\n" "$FIRST" "$SECOND" | sudo <%= config.bin %> user:secret:resync alice --code - --code - --json',
  ]
  static exitCodes = {
    1: "the two codes were not found one after the other within a day of this host's clock, or are not newer than the last accepted code",
    2: 'the user has no secret, or not exactly two codes were given',
    4: 'not root',
  }
  static override args = {username: requiredUsernameArg('user whose token drifted')}
  static override flags = {
    code: Flags.string({
      description: 'two consecutive codes from the token, the older first (give --code twice); - reads a line from stdin',
      multiple: true,
      required: true,
    }),
  }

  async run() {
    const user = this.targetUser(this.args.username)
    this.requireRoot('user:secret:resync')
    const given = this.flags.code
    if (given.length !== 2) throw usageError('give two consecutive codes from the token: --code FIRST --code SECOND (- reads one line from stdin)')
    const piped = await readCodeLines(given.filter((c) => c === '-').length)
    const [first, second] = given.map((c) => (c === '-' ? piped.shift()! : c))
    const outcome = await this.store.update((doc) => {
      const record = doc.users.get(user)
      if (!record?.secret) return undefined
      const now = Date.now()
      const found = findResync(record, first, second, now)
      if ('step' in found) applyResync(record, found, now)
      return {...found, interval: record.interval}
    })
    if (!outcome) throw usageError(`${user} has no 2FA secret to resync`)
    if ('refused' in outcome && outcome.refused === 'code_replayed')
      throw new TfaError(`these codes are not newer than ${user}'s last accepted code: wait for the next two and try again`, EXIT.denied, 'code_replayed')
    if ('refused' in outcome)
      throw new TfaError(
        `no two consecutive codes of ${user}'s secret match these within a day of this host's clock: check the token and the order (older first)`,
        EXIT.denied,
        'code_invalid',
      )
    const driftSeconds = outcome.drift * outcome.interval
    this.say(
      `${user}: token ${outcome.drift === 0 ? 'in step with this host' : `${Math.abs(driftSeconds)} s ${driftSeconds > 0 ? 'ahead' : 'behind'}`} (${outcome.drift} steps); window centred on it`,
    )
    return {user, changed: true, driftSteps: outcome.drift, driftSeconds}
  }
}
