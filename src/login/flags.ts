/**
 * The one definition of login:check's options. The oclif command builds its flags from it and
 * the fast path (src/login/fast.ts, which must not load oclif) parses with it, so both accept the
 * same values and defaults.
 */
export const LOGIN_CHECK_FLAGS = {
  service: {description: 'where the login happens', options: ['ui', 'ssh'], default: 'ui'},
  method: {description: 'how the first factor was given (key: SSH public key)', options: ['password', 'key'], default: 'password'},
  code: {description: 'the code from the app, a recovery code or a bypass code; - reads one line from stdin (keeps it out of the process list)'},
} as const satisfies Record<string, {description: string; options?: readonly string[]; default?: string}>

export type LoginFlagName = keyof typeof LOGIN_CHECK_FLAGS

/** `--name` → the values it accepts (null: any), for a parser without oclif. */
export const loginOptionTable = (): Record<string, readonly string[] | null> =>
  Object.fromEntries(Object.entries(LOGIN_CHECK_FLAGS).map(([name, spec]) => [`--${name}`, 'options' in spec ? spec.options : null]))

/** The default of a flag (as the oclif command declares it). */
export const loginDefault = (name: LoginFlagName): string | undefined =>
  'default' in LOGIN_CHECK_FLAGS[name] ? (LOGIN_CHECK_FLAGS[name] as {default: string}).default : undefined
