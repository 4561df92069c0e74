// Storage prints nothing: what it has to tell beside a result (a stale lock it removed, an old
// users file it could not delete) is a notice. The process's front end (the base command, the
// login fast path) listens and shows them as warnings; until one listens they are kept.

type Listener = (message: string) => void

let listener: Listener | undefined
const kept: string[] = []

/** Tells the front end something it should show as a warning (never a secret or a code). */
export function notice(message: string): void {
  if (listener) listener(message)
  else kept.push(message)
}

/** Hands every notice to `fn` from now on, those kept so far first. */
export function onNotice(fn: Listener): void {
  listener = fn
  for (const m of kept.splice(0)) fn(m)
}
