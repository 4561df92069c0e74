import * as fs from 'node:fs'
import {dirname} from 'node:path'
import type {AuditEvent} from '../audit.js'
import {checkPrivateFile, ensureDir, lstatPrivate} from '../../os/files.js'
import type {AuditSink} from '../backend.js'

/**
 * The file store's audit sink for a responder (radius:serve): the same audit.log lines as every command (one JSON object a
 * line, O_APPEND, fsync), with the client's address. A responder decides hundreds of logins a
 * second, so the lines of one turn of the event loop (a batch of logins) go out in one write and
 * one fsync (off the event loop), to a descriptor kept open; the log is never read; a failing
 * write is reported (once a minute), never fatal.
 */
export class AuditWriter implements AuditSink {
  private pending: string[] = []
  private flushing: Promise<void> | undefined
  private lastProblem = 0
  private file?: {fd: number; dev: bigint; ino: bigint}
  /** The responder's own identity, the same for every line. */
  private readonly actor = {uid: process.getuid?.() ?? -1, sudoUser: null}

  constructor(
    private readonly path: string,
    private readonly warn: (message: string) => void,
  ) {}

  /** The time of the last line, written once per millisecond (thousands of lines a second share it). */
  private clock = {ms: Number.NaN, iso: ''}

  record(event: Omit<AuditEvent, 'time' | 'actor'>): void {
    const ms = Date.now()
    if (ms !== this.clock.ms) this.clock = {ms, iso: new Date(ms).toISOString()}
    const line: AuditEvent = {time: this.clock.iso, actor: this.actor, ...event}
    this.pending.push(`${JSON.stringify(line)}\n`)
    this.flushing ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush())
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const lines = this.pending.join('')
      this.pending = []
      try {
        const fd = this.open()
        const data = Buffer.from(lines)
        for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done)
        await new Promise<void>((resolve, reject) => fs.fsync(fd, (error) => (error ? reject(error) : resolve()))) // off the event loop
      } catch (error) {
        this.close()
        if (Date.now() - this.lastProblem > 60_000) {
          this.lastProblem = Date.now()
          this.warn(`could not write the audit log ${this.path}: ${(error as Error).message}`)
        }
      }
    }
    this.flushing = undefined
  }

  /**
   * The log's descriptor, kept open between batches while the path still names the file it
   * opened (a log moved aside, e.g. by logrotate, is followed by a new one). The path is judged
   * before every batch, as every command judges it.
   */
  private open(): number {
    if (this.file) {
      // the path still names the private file held open: one lstat, nothing to create or judge anew
      const st = lstatPrivate(this.path)
      if (st && st.ino === this.file.ino && st.dev === this.file.dev) return this.file.fd
    }
    // another file, none, or one to refuse (a link, another's, one others can read): judged, then opened anew
    ensureDir(dirname(this.path))
    checkPrivateFile(this.path)
    this.close()
    const fd = fs.openSync(this.path, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600)
    const st = fs.fstatSync(fd, {bigint: true})
    this.file = {fd, dev: st.dev, ino: st.ino}
    return fd
  }

  private close(): void {
    if (this.file) fs.closeSync(this.file.fd)
    this.file = undefined
  }

  /** Resolves when every recorded line has been written (or has failed to be). */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing
    this.close() // opened again by the next line, if any
  }
}
