import type {AuditRecord, AuditSink, StoreBackend} from './backend.js'

// Building blocks of StoreBackend.responder(): each backend picks what suits it.

/**
 * One lock for the whole store: a responder's logins queue here instead of polling the lock
 * against each other (other processes still take the lock as usual). Only the locked part
 * queues: checkLogin waits a failure's delay after the lock is released.
 */
export function queuedLogins(login: StoreBackend['login']): StoreBackend['login'] {
  let tail: Promise<unknown> = Promise.resolve()
  return (user, fn) => {
    const run = tail.then(() => login(user, fn))
    tail = run.catch(() => undefined)
    return run
  }
}

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
