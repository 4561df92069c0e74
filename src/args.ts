import {Args} from '@oclif/core'

const DEFAULT_USER = 'user [default: the invoking user, SUDO_USER under sudo]'

/**
 * A USERNAME argument. `ignoreStdin`: oclif would otherwise fill a missing argument from piped
 * stdin, taking a users list or a secret meant for --users-file - / --secret-stdin as a name.
 */
export const usernameArg = (description = DEFAULT_USER) => Args.string({description, ignoreStdin: true})
export const requiredUsernameArg = (description: string) => Args.string({description, required: true, ignoreStdin: true})

/** All of stdin, however slowly it arrives (a pipe may still be empty when we start). */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
