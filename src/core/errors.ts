/** Exit codes are a contract (docs/exit-codes.md; scripts/gen-docs.mjs words them for the reference). */
export const EXIT = {
  ok: 0,
  denied: 1,
  usage: 2,
  store: 3,
  forbidden: 4,
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** An expected failure: one line for the user, and the exit code that goes with it. */
export class TfaError extends Error {
  constructor(
    message: string,
    readonly exit: ExitCode,
    readonly code?: string,
  ) {
    super(message)
    this.name = 'TfaError'
  }
}

export const usageError = (message: string) => new TfaError(message, EXIT.usage, 'usage')
export const storeError = (message: string) => new TfaError(message, EXIT.store, 'store')
export const forbidden = (message: string) => new TfaError(message, EXIT.forbidden, 'forbidden')
