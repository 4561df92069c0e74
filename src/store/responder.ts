import type {Doc} from '../core/model.js'
import type {AuditRecord, AuditSink, StoreBackend} from './backend.js'

// Building blocks of StoreBackend.responder(): each backend picks what suits it.

/**
 * Audit events through the backend's own writes: the decisions of one turn go out in one write
 * (recordEvents where the backend has it), one batch at a time, in order; a failure is reported
 * (once a minute), never fatal.
 */
export function batchedAudit(store: Pick<StoreBackend, 'recordEvent' | 'recordEvents'>, warn: (line: string) => void): AuditSink {
  let queue: AuditRecord[] = []
  let flushing: Promise<void> | undefined
  let last = 0
  const report = (problem: string | undefined) => {
    if (problem && Date.now() - last > 60_000) {
      last = Date.now()
      warn(problem)
    }
  }
  const flush = async () => {
    while (queue.length > 0) {
      const batch = queue.slice(0, 1000)
      queue = queue.slice(batch.length)
      if (store.recordEvents) report(await store.recordEvents(batch))
      else for (const e of batch) report(await store.recordEvent(e.command, e.user, {outcome: e.outcome, reason: e.reason}))
    }
    flushing = undefined
  }
  return {
    record: (e) => {
      queue.push({time: new Date().toISOString(), ...e})
      flushing ??= new Promise<void>((resolve) => setImmediate(resolve)).then(flush)
    },
    drain: async () => {
      while (flushing) await flushing
    },
  }
}

/** One login waiting for its batch: `fn` as login() takes it, and when it must be answered by. */
export interface PendingLogin {
  user: string
  fn: (doc: Doc) => unknown
  deadline: number
}

/** What became of one login of a batch: its `fn`'s value, or the error that refuses it. */
export type LoginOutcome = {value: unknown} | {error: unknown}

/**
 * Group commit behind `login(user, fn)`: the logins that arrive while the database is busy wait
 * here and go together, as one batch, to `run` (one transaction for all of them), at most
 * `concurrency` batches at a time and `maxBatch` logins a batch. A batch starts at the end of an
 * event-loop turn, so the requests read in one turn share it. `run` settles every login of the
 * batch (outcomes in the batch's order) or throws, and then every login of the batch fails with
 * that error. A login still waiting at its deadline fails with `late()` without being run.
 */
export function batchedLogins(
  run: (batch: PendingLogin[]) => Promise<LoginOutcome[]>,
  opts: {concurrency: number; maxBatch: number; boundMs: number; late: () => Error},
): {login: StoreBackend['login']; waiting: () => number} {
  type Waiting = PendingLogin & {resolve: (value: unknown) => void; reject: (error: unknown) => void}
  let queue: Waiting[] = []
  let running = 0
  let scheduled = false
  const start = () => {
    scheduled = false
    while (running < opts.concurrency && queue.length > 0) {
      const now = Date.now()
      const batch: Waiting[] = []
      const rest: Waiting[] = []
      for (const w of queue) {
        if (w.deadline <= now) w.reject(opts.late())
        else (batch.length < opts.maxBatch ? batch : rest).push(w)
      }
      queue = rest
      if (batch.length === 0) return
      running++
      run(batch)
        .then(
          (outcomes) =>
            batch.forEach((w, i) => {
              const o = outcomes[i]
              if (o && 'value' in o) w.resolve(o.value)
              else w.reject(o ? o.error : new Error('no outcome'))
            }),
          (error) => {
            for (const w of batch) w.reject(error)
          },
        )
        .finally(() => {
          running--
          schedule()
        })
    }
  }
  const schedule = () => {
    if (scheduled || queue.length === 0) return
    scheduled = true
    setImmediate(start)
  }
  return {
    login: <T>(user: string, fn: (doc: Doc) => T) =>
      new Promise<T>((resolve, reject) => {
        queue.push({user, fn, deadline: Date.now() + opts.boundMs, resolve: resolve as (value: unknown) => void, reject})
        schedule()
      }),
    waiting: () => queue.length,
  }
}
