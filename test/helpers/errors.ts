import {TfaError} from '../../src/core/errors.js'

/** The TfaError `fn` throws (anything else is rethrown; no throw at all fails the test). */
export function thrown(fn: () => unknown): TfaError {
  try {
    fn()
  } catch (error) {
    if (error instanceof TfaError) return error
    throw error
  }
  throw new Error('expected a TfaError, nothing was thrown')
}
