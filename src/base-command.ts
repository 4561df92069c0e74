import {Command, Flags, type Interfaces, ux} from '@oclif/core'
import {userInfo} from 'node:os'
import {EXIT, forbidden, TfaError, usageError} from './core/errors.js'
import type {Doc} from './core/model.js'
import {guardSelfService} from './core/selfservice.js'
import {checkUsername} from './core/validate.js'
import {readCodeLine} from './code-input.js'
import {openStore, type Repair, type StoreBackend} from './store/backend.js'
import {dropSudoEnvironment, ignoredWarning, resolveStore} from './store/config.js'
import {onNotice} from './store/notices.js'
import {describeError} from './ui/errors.js'
import {warningPrefix} from './ui/colour.js'

export type FlagsOf<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type ArgsOf<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * Shared by every command: `--store`, `--json`, the exit-code contract and one-line errors.
 * Commands parse, call core/store, and return a result that is printed as-is under `--json`.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true
  static override baseFlags = {
    store: Flags.string({
      description:
        "store file, or a PostgreSQL URL (postgresql://HOST/DB) [default: the config file's, else /var/lib/tfactl/store.json as root, and for anyone while it exists; else $XDG_STATE_HOME/tfactl/store.json]",
      env: 'TFACTL_STORE',
      helpGroup: 'GLOBAL',
    }),
    'key-file': Flags.string({
      description: "key that seals the secrets of a database store [default: the config file's, else /etc/tfactl/tfactl.key]",
      env: 'TFACTL_KEY_FILE',
      helpGroup: 'GLOBAL',
    }),
  }

  /** Read-only commands set this to false: they leave no line in audit.log. */
  static audited = true

  protected flags!: FlagsOf<T>
  /** What the audit line says about this run; commands fill in the user and the outcome. */
  protected auditUser: string | null = null
  /** Every user a bulk command acted on: each gets its own audit line. */
  protected auditUsers = new Set<string>()
  protected auditOutcome: {outcome: string; reason: string | null} = {outcome: 'ok', reason: null}
  protected args!: ArgsOf<T>
  /** Every positional argument, for commands that take several (`strict = false`). */
  protected argList: string[] = []
  /** Every warning of this run, for the JSON result. */
  private warnings: string[] = []
  private storeInstance?: StoreBackend
  /** Whether the command reached the store (only those runs are audited). */
  private storeUsed = false

  public override async init(): Promise<void> {
    await super.init()
    // Under sudo the environment does not choose the store (TFACTL_*, PG*): dropped before the
    // flags are parsed, since oclif reads TFACTL_STORE and TFACTL_KEY_FILE into them.
    const ignored = dropSudoEnvironment()
    const {args, argv, flags} = await this.parse({
      args: this.ctor.args,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      flags: this.ctor.flags,
      strict: this.ctor.strict,
    })
    this.flags = flags as FlagsOf<T>
    this.args = args as ArgsOf<T>
    this.argList = argv as string[]
    onNotice((message) => this.warning(message)) // storage prints nothing: its notices are shown here
    // Opening touches nothing (a database is connected to on first use); a bad URL or config
    // file is a usage error here.
    const {spec, keyFile} = resolveStore({store: this.flags.store, keyFile: this.flags['key-file']})
    const ignoredNote = ignoredWarning(ignored)
    if (ignoredNote) this.warning(ignoredNote)
    this.storeInstance = await openStore(spec, {keyFile})
    // A change is audited as it commits, from its change set, under the store's lock; the outcome
    // is the one this run reports at that moment (ok, unless the update's function said otherwise).
    if ((this.ctor as unknown as typeof BaseCommand).audited)
      this.storeInstance.auditChanges({command: this.id ?? 'unknown', outcome: () => ({...this.auditOutcome})})
  }

  /** The store (a file or a database: commands never need to know which). */
  protected get store(): StoreBackend {
    this.storeUsed = true
    return this.storeInstance!
  }

  /**
   * The store's repairs, for the emergency commands (moving a broken store aside, restoring
   * `.bak`): a capability of the file store. Elsewhere (a database, repaired with PostgreSQL's
   * own tools) a usage error, exit 2.
   */
  protected repair(what: string): Repair {
    const store = this.store
    if (store.repair) return store.repair
    throw usageError(`${what} repairs a store file; ${store.description} is a database: restore it with PostgreSQL's own backups (pg_dump, PITR)`)
  }

  /** Human output on stdout (muted under --json). */
  protected say(message: string): void {
    this.log(message)
  }

  /** A warning on stderr, and in the JSON result's `warnings`; it never changes the outcome. */
  protected warning(message: string): void {
    this.warnings.push(message)
    process.stderr.write(`${warningPrefix()} ${message}\n`)
  }

  /** Under --json, the run's warnings (the command's and storage's notices) travel in the result, once each. */
  protected override toSuccessJson(result: unknown): unknown {
    if (this.warnings.length === 0 || typeof result !== 'object' || result === null || Array.isArray(result)) return result
    const own = (result as {warnings?: unknown}).warnings
    return {...result, warnings: [...new Set([...(Array.isArray(own) ? own : []), ...this.warnings])]}
  }

  /** True when a person can answer a prompt: both ends are terminals and JSON is off. */
  protected interactive(): boolean {
    return Boolean(process.stdin.isTTY && process.stdout.isTTY) && !this.jsonEnabled()
  }

  /** The user a command acts on: the argument, else the invoking user (SUDO_USER under sudo). */
  protected targetUser(name: string | undefined): string {
    const user = checkUsername(name ?? (process.env.SUDO_USER || userInfo().username))
    this.auditUser = user
    this.auditUsers.add(user)
    return user
  }

  /**
   * The `--code` proof for self-service under sudo. On a terminal it is asked for (hidden) when
   * needed, so the sudoers rule can allow the commands without arguments only.
   */
  protected async selfServiceCode(user: string, given: string | undefined): Promise<string | undefined> {
    given = await this.codeFlag(given)
    if (given !== undefined || process.env.SUDO_USER !== user || !this.interactive()) return given
    if (!(await this.store.read()).users.get(user)?.secret) return given
    const {password} = await import('@inquirer/prompts')
    return password({message: `current 2FA code (or a recovery code) for ${user}:`, mask: '*'})
  }

  /**
   * A store update guarded by the self-service proof (see guardSelfService): a wrong or missing
   * `--code` under sudo is a counted failure and exit 4, and nothing else is written. `one`: the
   * change touches that user alone (the store reads that user's record only).
   */
  protected async selfServiceUpdate<T>(
    targets: (doc: Doc) => readonly string[],
    proof: string | undefined,
    change: (doc: Doc) => T | Promise<T>,
    one?: string,
  ): Promise<T> {
    const now = Date.now()
    // `change` may wait (for hashes made meanwhile): its result is awaited inside the update, before the write
    const guarded = async (doc: Doc) => {
      const outcome = guardSelfService(doc, targets(doc), process.env.SUDO_USER, proof, now, () => change(doc))
      if ('refusal' in outcome) this.auditOutcome = {outcome: 'error', reason: 'forbidden'} // the counted failure commits as what the run ends with
      return 'refusal' in outcome ? outcome : {result: await outcome.result}
    }
    const outcome = await (one === undefined ? this.store.update(guarded) : this.store.updateUser(one, guarded))
    if ('refusal' in outcome) throw forbidden(outcome.refusal)
    return outcome.result
  }

  /** `--code` as given, or one line read from stdin for `--code -` (codes on the command line show in /proc). */
  protected async codeFlag(given: string | undefined): Promise<string | undefined> {
    if (given !== '-') return given
    return readCodeLine()
  }

  /** Commands that only root may run (bypass, unlock). */
  protected requireRoot(what: string): void {
    if ((process.getuid?.() ?? 0) !== 0) throw forbidden(`${what} is for root only: run it with sudo`)
  }

  /** Asks on a terminal; elsewhere a confirmation must come from `flag`. */
  protected async confirm(question: string, given: boolean | undefined, flag = '--yes'): Promise<void> {
    if (given) return
    if (!this.interactive()) throw usageError(`confirmation needed: add ${flag} (no terminal to ask on)`)
    const {confirm} = await import('@inquirer/prompts')
    if (!(await confirm({message: question, default: false}))) throw new TfaError('cancelled, nothing changed', EXIT.denied, 'cancelled')
  }

  /**
   * Every run that reached the store is recorded, refusals and errors included. A run whose change
   * was audited as it committed, with the outcome the run ends with, needs no line more; one that
   * failed after its change committed gets its error line.
   */
  public override async finally(error: Error | undefined): Promise<void> {
    const store = this.storeInstance
    if (!store) return
    try {
      if (!(this.ctor as unknown as typeof BaseCommand).audited || !this.storeUsed) return
      const outcome = error ? {outcome: 'error', reason: error instanceof TfaError ? (error.code ?? null) : 'error'} : this.auditOutcome
      const users = new Set(this.auditUsers)
      if (this.auditUser) users.add(this.auditUser)
      // the users whose lines a change already wrote with this outcome are not recorded twice
      const done = store.changeAudited
      const said = done && done.outcome === outcome.outcome && done.reason === outcome.reason ? done.users : undefined
      const rest = said ? [...users].filter((user) => !said.has(user)) : [...users]
      if (said && rest.length === 0) return
      const problem = await store.recordEvent(this.id ?? 'unknown', rest, outcome)
      if (problem) this.warning(problem)
    } finally {
      await store.close()
    }
  }

  /**
   * The result as oclif prints it when no colour theme is set (the same text), without oclif's
   * tokenizer, whose time grows faster than the output: user:list of 100 000 users took seconds in it.
   */
  public override logJson(json: unknown): void {
    if (this.config.theme?.json) super.logJson(json)
    else ux.stdout(JSON.stringify(json, null, 2))
  }

  /** Maps every failure to its documented exit code and prints it on one line, never a stack. */
  public override async catch(error: Error & {exitCode?: number}): Promise<void> {
    const {exit, json, text} = describeError(error)
    process.exitCode = exit
    if (this.jsonEnabled()) this.logJson(json)
    else process.stderr.write(text)
  }
}
