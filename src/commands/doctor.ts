import {Flags} from '@oclif/core'
import {execFileSync} from 'node:child_process'
import {readFileSync, statSync} from 'node:fs'
import {BaseCommand} from '../base-command.js'
import {type Check, type DoctorFacts, diagnose, type FileFact, pamModule, parseSshdSettings, type Status, type UsersFileFact} from '../core/doctor.js'
import {EXIT} from '../core/errors.js'
import {clockSynced} from '../os/clock.js'
import {installedPamRadius} from '../os/pam-radius.js'
import {describeOpeners, openers, procName} from '../os/procs.js'
import {type Colour, paint} from '../ui/colour.js'

const SIGNS: Record<Status, string> = {ok: 'ok     ', finding: 'FINDING', unknown: '?      ', skipped: '-      '}
const HUES: Record<Status, Colour | undefined> = {ok: 'green', finding: 'red', unknown: 'yellow', skipped: undefined}

/** `doctor --json`. */
export interface DoctorResult {
  ok: boolean
  findings: number
  checks: Check[]
}

export default class Doctor extends BaseCommand<typeof Doctor> {
  static override description = `check what 2FA depends on: clock, store and key permissions, the pam_oath users file, sshd's PAM and settings

Exit 0 when all is well, 1 with findings (each says what to do; a broken state comes with "fix",
the one command that gets out of it: see docs/emergency.md). Checks that cannot be made here
(no timedatectl, no sshd) are reported as unknown and do not count as findings.`
  static override audited = false
  static override examples = ['sudo <%= config.bin %> doctor', 'sudo <%= config.bin %> doctor --json']
  static override flags = {
    'pam-file': Flags.string({description: "sshd's PAM file", default: '/etc/pam.d/sshd'}),
    'sshd-config': Flags.string({description: "sshd's configuration", default: '/etc/ssh/sshd_config'}),
  }

  async run(): Promise<DoctorResult> {
    const checks = diagnose(await this.facts())
    const findings = checks.filter((c) => c.status === 'finding').length
    for (const c of checks)
      this.say(
        `${HUES[c.status] ? paint(HUES[c.status]!, SIGNS[c.status]) : SIGNS[c.status]}  ${c.check}: ${c.message}${c.fix ? `\n         fix: ${c.fix}` : ''}`,
      )
    this.say(findings === 0 ? paint('green', 'no findings') : paint('red', `${findings} finding(s)`))
    process.exitCode = findings === 0 ? EXIT.ok : EXIT.denied
    return {ok: findings === 0, findings, checks}
  }

  /** What the checks look at, read from this host (src/core/doctor.ts decides from it). */
  private async facts(): Promise<DoctorFacts> {
    const clock = clockSynced()
    const {findings, doc} = await this.store.doctor()
    const keepsUsersFile = this.store.localOathFile
    const pam = readFact(this.flags['pam-file'])
    const facts: DoctorFacts = {clock, store: {findings, doc, keepsUsersFile}, pam, sshd: {config: this.flags['sshd-config']}}
    if (!doc) return facts
    const {radius} = pamModule(pam)
    if (keepsUsersFile && doc.settings.oathFile) facts.usersFile = this.usersFileFact(doc.settings.oathFile)
    if (radius) {
      facts.radiusConf = radiusConfFact(radius.conf ?? '/etc/pam_radius_auth.conf')
      facts.pamRadiusRequireMa = installedPamRadius()?.requireMa ?? false // pam_radius_auth 3.0 or later
    }
    if (doc.settings.enabled && doc.settings.ssh && (radius || keepsUsersFile)) facts.sshd.settings = effectiveSshd(facts.sshd.config)
    return facts
  }

  private usersFileFact(path: string): UsersFileFact {
    const reader = this.store.usersFile
    const leftovers = reader?.leftovers(path) ?? {lock: false, pamNew: false, temps: []}
    const fact: UsersFileFact = {path, leftovers}
    if (leftovers.lock) fact.lockHolders = describeOpeners(openers([procName(path), procName(`${path}.lock`)]))
    try {
      const file = reader?.read(path)
      if (file) fact.file = {mode: file.mode, uid: file.uid, entries: file.entries}
    } catch (error) {
      fact.error = (error as Error).message
    }
    return fact
  }
}

const errorOf = (error: unknown): string => (error as NodeJS.ErrnoException).code ?? (error as Error).message

function readFact(path: string): FileFact {
  try {
    return {path, text: readFileSync(path, 'utf8')}
  } catch (error) {
    return {path, error: errorOf(error)}
  }
}

/** pam_radius_auth's server file: its owner and mode, then its text. */
function radiusConfFact(path: string): DoctorFacts['radiusConf'] {
  try {
    const st = statSync(path)
    return {...readFact(path), uid: st.uid, mode: st.mode}
  } catch (error) {
    return {path, error: errorOf(error)}
  }
}

/** sshd's effective settings (`sshd -T`), else the first value of each keyword in the file. */
function effectiveSshd(config: string): Map<string, string> | undefined {
  try {
    const out = execFileSync('/usr/sbin/sshd', ['-T', '-f', config], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000})
    return parseSshdSettings(out)
  } catch {
    try {
      return parseSshdSettings(readFileSync(config, 'utf8'))
    } catch {
      return undefined
    }
  }
}
