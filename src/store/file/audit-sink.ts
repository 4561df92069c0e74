import * as fs from 'node:fs'
import {dirname} from 'node:path'
import type {AuditEvent} from '../audit.js'
import {checkPrivateFile, ensureDir} from '../../os/files.js'
import type {AuditSink} from '../backend.js'

/**
 * The file store's audit sink for a responder (radius:serve): the same audit.log lines as every command (one JSON object a
 * line, O_APPEND, fsync), with the client's address. A responder decides hundreds of logins a
 * second, so the lines of one turn of the event loop go out in one write and one fsync, off
 * the event loop; a failing write is reported (once a minute), never fatal.
 */
export class AuditWriter implements AuditSink {
  private pending: string[] = []
  private flushing: Promise<void> | undefined
  private lastProblem = 0
  /** The responder's own identity, the same for every line. */
  private readonly actor = {uid: process.getuid?.() ?? -1, sudoUser: null}

  constructor(
    private readonly path: string,
    private readonly warn: (message: string) => void,
  ) {}

  record(event: Omit<AuditEvent, 'time' | 'actor'>): void {
    const line: AuditEvent = {time: new Date().toISOString(), actor: this.actor, ...event}
    this.pending.push(`${JSON.stringify(line)}\n`)
    this.flushing ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush())
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const lines = this.pending.join('')
      this.pending = []
      try {
        ensureDir(dirname(this.path))
        checkPrivateFile(this.path)
        const file = await fs.promises.open(this.path, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600)
        try {
          await file.write(lines)
          await file.sync()
        } finally {
          await file.close()
        }
      } catch (error) {
        if (Date.now() - this.lastProblem > 60_000) {
          this.lastProblem = Date.now()
          this.warn(`could not write the audit log ${this.path}: ${(error as Error).message}`)
        }
      }
    }
    this.flushing = undefined
  }

  /** Resolves when every recorded line has been written (or has failed to be). */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing
  }
}
