import {Flags} from '@oclif/core'
import {readStdin, usernameArg} from '../../../args.js'
import {readFileSync} from 'node:fs'
import {hostname} from 'node:os'
import {BaseCommand} from '../../../base-command.js'
import {enrolmentView, type EnrolmentView, matchEnrolment, newEnrolment} from '../../../core/enrol.js'
import {EXIT, TfaError, usageError} from '../../../core/errors.js'
import type {Digits, Doc, Enrolment, Interval} from '../../../core/model.js'
import {parseUserList, unique} from '../../../core/userlist.js'
import {groupMembers} from '../../../core/groups.js'
import {nss} from '../../../os/nss.js'
import {activate, getOrCreate} from '../../../core/users.js'
import {normalizeCode} from '../../../core/validate.js'
import {progress} from '../../../ui/progress.js'
import {prepareQrDir, writeNewPrivateFile} from '../../../ui/qr-dir.js'
import {INTERVAL_WARNING, type QrChoice, renderEnrolment} from '../../../ui/enrolment.js'

/** `user:secret:renew --json`: each user's new enrolment (the secret and its URI), or unchanged. */
export interface RenewResult {
  users: ((EnrolmentView & {changed: true; pending: boolean}) | {user: string; changed: false})[]
}

export default class Renew extends BaseCommand<typeof Renew> {
  static override description = `create a new random secret for one or more users and show it as a QR code, key and URI

On a terminal (one user) the new secret replaces the old one only after you type the first code
from your app; an empty answer cancels and keeps the old state. Without a terminal the new secret
is active at once, unless --pending: then user:secret:confirm activates it.`
  static override examples = [
    '<%= config.bin %> user:secret:renew',
    'sudo <%= config.bin %> user:secret:renew alice --interval 60 --digits 8 --qr small',
    '<%= config.bin %> user:secret:renew --users-file users.txt --if-missing --qr-dir ./qr --json',
    'sudo <%= config.bin %> user:secret:renew --group operators --if-missing --qr none --json',
    '<%= config.bin %> user:secret:renew alice --pending --json',
  ]
  static override strict = false
  static override args = {username: usernameArg('user(s) to enrol [default: the invoking user, SUDO_USER under sudo]')}
  static override flags = {
    interval: Flags.string({description: 'seconds per code (Google Authenticator needs 30)', options: ['30', '60'], default: '30'}),
    digits: Flags.string({description: 'digits per code', options: ['6', '7', '8'], default: '6'}),
    qr: Flags.string({description: 'how to draw the QR code [default: terminal; none for several users]', options: ['terminal', 'small', 'none']}),
    'qr-dir': Flags.string({
      description:
        "also write <user>.png and <user>.svg (new files, 0600) into this directory; it must be yours or root's, not writable by group or others, nor inside a directory another user could swap",
    }),
    'users-file': Flags.string({description: 'file with one username per line (# comments; - = stdin)'}),
    group: Flags.string({
      description:
        'enrol the members of this Unix group as NSS sees them (its member list and the users whose primary group it is: /etc/group, LDAP, SSSD, AD alike)',
    }),
    'if-missing': Flags.boolean({description: 'only enrol users who have no secret yet (idempotent provisioning)'}),
    pending: Flags.boolean({description: 'store the new secret as pending until user:secret:confirm gets a right code'}),
    verify: Flags.boolean({description: 'on a terminal, ask for the first code before replacing the secret', allowNo: true, default: true}),
    code: Flags.string({description: 'a current code or recovery code, to renew your own secret under sudo (- reads it from stdin)'}),
  }

  async run(): Promise<RenewResult> {
    const f = this.flags
    const users = await this.users()
    if (users.length === 0) {
      this.say(`group ${f.group} has no members: nothing to enrol`)
      return {users: []}
    }
    // Before anything is enrolled: an unsafe hand-out directory changes nothing (exit 2).
    const qrDir = f['qr-dir'] === undefined ? undefined : prepareQrDir(f['qr-dir'])
    const interval = Number(f.interval) as Interval
    const digits = Number(f.digits) as Digits
    if (interval !== 30) this.warning(INTERVAL_WARNING)
    const now = Date.now()
    const fresh = new Map(users.map((u) => [u, newEnrolment(interval, digits, now)]))
    const askFirst = users.length === 1 && f.verify && !f.pending && this.interactive()
    const host = hostname()

    // the settings alone (the file store reads the header only: no record is decoded)
    const before = {settings: this.store.settings ? await this.store.settings() : (await this.store.read()).settings}
    let issuer = before.settings.issuer
    let confirmedStep: number | undefined
    let proof = await this.codeFlag(f.code)
    if (askFirst) {
      const [user] = users
      // Ask for the proof before the QR is scanned, not after.
      proof = await this.selfServiceCode(user, proof)
      this.say(await renderEnrolment(enrolmentView(user, fresh.get(user)!, issuer, host), (f.qr as QrChoice) ?? 'terminal'))
      confirmedStep = await this.askFirstCode(fresh.get(user)!, before.settings.window)
    }

    const skipped = (doc: Doc, user: string) => {
      const record = doc.users.get(user)
      return Boolean(f['if-missing'] && (record?.secret || (f.pending && record?.pending)))
    }
    const changed = await this.selfServiceUpdate(
      (doc) => users.filter((u) => !skipped(doc, u)),
      proof,
      (doc) => {
        issuer = doc.settings.issuer
        const done: string[] = []
        for (const user of users) {
          if (skipped(doc, user)) continue
          const enrolment = fresh.get(user)!
          if (f.pending) getOrCreate(doc, user).pending = enrolment
          else activate(doc, user, enrolment)
          if (confirmedStep !== undefined) getOrCreate(doc, user).lastUsedStep = confirmedStep
          done.push(user)
        }
        return {done: new Set(done)}
      },
      users.length === 1 ? users[0] : undefined,
    )

    const results: RenewResult['users'] = users.map((user) => {
      const isNew = changed.done!.has(user)
      return isNew ? {...enrolmentView(user, fresh.get(user)!, issuer, host), changed: true, pending: Boolean(f.pending)} : {user, changed: false}
    })
    await this.report(results, askFirst, qrDir)
    return {users: results}
  }

  /** Usernames from the arguments, --users-file and --group, all validated before anything is written. */
  private async users(): Promise<string[]> {
    const file = this.flags['users-file']
    const fromFile = file === undefined ? [] : parseUserList(await readList(file), file)
    const fromGroup = this.flags.group === undefined ? [] : groupMembers(this.flags.group, nss)
    if (this.flags.group !== undefined && fromGroup.length === 0 && this.argList.length + fromFile.length === 0) return [] // an empty group: nothing to do
    const names = [...this.argList, ...fromFile, ...fromGroup]
    if (names.length === 0) return [this.targetUser(undefined)]
    return unique(names.map((n) => this.targetUser(n)))
  }

  /** Asks for the app's first code until it matches; an empty answer abandons the enrolment. */
  private async askFirstCode(enrolment: Enrolment, window: number): Promise<number> {
    const {input} = await import('@inquirer/prompts')
    for (;;) {
      const answer = normalizeCode(await input({message: `code from your app (${enrolment.digits} digits, empty to cancel):`}))
      if (answer === '') throw new TfaError('enrolment cancelled: the previous secret (if any) still works', EXIT.denied, 'cancelled')
      const step = matchEnrolment(enrolment, answer, Date.now(), window)
      if (step !== undefined) return step
      this.say('that code does not match; check the app and the clock, then try again')
    }
  }

  private async report(results: Array<Partial<EnrolmentView> & {user: string; changed: boolean; pending?: boolean}>, shown: boolean, dir: string | undefined) {
    const enrolled = results.filter((r): r is EnrolmentView & {user: string; changed: boolean; pending: boolean} => r.changed)
    if (dir !== undefined) {
      const {qrPng, qrSvg} = await import('../../../ui/qr.js')
      const bar = progress('writing QR codes', enrolled.length)
      for (const r of enrolled) {
        writeNewPrivateFile(dir, `${r.user}.png`, await qrPng(r.uri))
        writeNewPrivateFile(dir, `${r.user}.svg`, await qrSvg(r.uri))
        bar.tick()
      }
      bar.done()
    }
    if (this.jsonEnabled()) return
    const single = results.length === 1
    const qr = (this.flags.qr as QrChoice | undefined) ?? (single ? 'terminal' : 'none')
    for (const r of results) {
      if (!r.changed) {
        this.say(`${r.user}: already has a secret, left unchanged`)
        continue
      }
      if (!shown) this.say(await renderEnrolment(r as EnrolmentView, qr))
      this.say(r.pending ? `${r.user}: new secret pending; activate it with user:secret:confirm ${r.user} --code CODE` : `${r.user}: new secret active`)
    }
  }
}

async function readList(file: string): Promise<string> {
  try {
    return file === '-' ? await readStdin() : readFileSync(file, 'utf8')
  } catch (error) {
    throw usageError(`cannot read --users-file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
}
