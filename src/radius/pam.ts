import {readFileSync} from 'node:fs'

/**
 * SSH 2FA through RADIUS: the pam_radius_auth line for /etc/pam.d/sshd, its server file, and
 * what a PAM file or server file says (for doctor). pam_radius_auth 2.0.0 with `skip_passwd`
 * sends the password the stack already checked (the responder ignores it in challenge mode) and
 * answers an Access-Challenge; `prompt_attribute` makes it honour Prompt = No-Echo.
 */

export const DEFAULT_RADIUS_CONF = '/etc/tfactl/pam_radius_auth.conf'
export const DEFAULT_RADIUS_SERVER = '127.0.0.1:1812'
/** Success goes on to the rest of the stack; anything else (Reject, no answer) ends the login. */
export const PAM_RADIUS_CONTROL = '[success=ok default=die]'

/**
 * The PAM line. `requireMa` (pam_radius_auth 3.0 only; 2.0 does not know the option): answers
 * without a valid Message-Authenticator are discarded, so nobody without the shared secret can
 * forge one (BlastRADIUS); 3.0 also signs its requests, so the responder's clients line can say
 * `require-ma`.
 */
export const pamRadiusLine = (conf: string, requireMa = false): string =>
  `auth ${PAM_RADIUS_CONTROL} pam_radius_auth.so conf=${conf} skip_passwd prompt_attribute${requireMa ? ' require_message_authenticator' : ''}`

/** Where distributions install the module (Debian's multiarch path first). */
export const PAM_RADIUS_MODULES = [
  '/lib/x86_64-linux-gnu/security/pam_radius_auth.so',
  '/usr/lib/x86_64-linux-gnu/security/pam_radius_auth.so',
  '/lib/aarch64-linux-gnu/security/pam_radius_auth.so',
  '/usr/lib/aarch64-linux-gnu/security/pam_radius_auth.so',
  '/usr/lib64/security/pam_radius_auth.so',
  '/lib/security/pam_radius_auth.so',
  '/usr/lib/security/pam_radius_auth.so',
]

/**
 * Whether a pam_radius_auth module signs its requests and can require signed answers: 3.0
 * (August 2024, the BlastRADIUS release) has the `require_message_authenticator` option, 2.0
 * (Debian 12) has neither. The module's own bytes decide: they hold the names of its options.
 */
export const supportsMessageAuthenticator = (module: Buffer): boolean => module.includes('require_message_authenticator')

/** The installed module (the first found) and what it supports; undefined when none is installed. */
export function installedPamRadius(): {module: string; requireMa: boolean} | undefined {
  for (const module of PAM_RADIUS_MODULES) {
    let bytes: Buffer
    try {
      bytes = readFileSync(module)
    } catch {
      continue
    }
    return {module, requireMa: supportsMessageAuthenticator(bytes)}
  }
  return undefined
}

/** Seconds pam_radius waits for an answer: longer than a failed check's delay, or it gives up first. */
export const radiusTimeout = (failDelayMs: number): number => Math.ceil(failDelayMs / 1000) + 5

/** One line of pam_radius's server file: `server[:port] secret [timeout]`. */
export const serverLine = (server: string, secret: string, timeout: number): string => `${server}\t${secret}\t${timeout}`

export interface PamRadius {
  line: string
  conf?: string
  skipPasswd: boolean
  promptAttribute: boolean
  /** require_message_authenticator (pam_radius_auth 3.0): unsigned answers are discarded. */
  requireMa: boolean
  /** The control field ends the login on failure (die / requisite / required). */
  failsClosed: boolean
  afterPassword: boolean
}

/** The first active `auth … pam_radius_auth.so` line of a PAM file, if any. */
export function findPamRadius(pamText: string): PamRadius | undefined {
  const lines = pamText.split('\n').map((l) => l.replace(/#.*/, '').trim())
  const index = lines.findIndex((l) => /^auth\s/.test(l) && /(^|[\s/])pam_radius_auth\.so(\s|$)/.test(l))
  if (index < 0) return undefined
  const line = lines[index]
  const words = line.split(/\s+/)
  const control = /^auth\s+(\[[^\]]*\]|\S+)/.exec(line)?.[1] ?? ''
  return {
    line,
    conf: /(?:^|\s)conf=(\S+)/.exec(line)?.[1],
    skipPasswd: words.includes('skip_passwd'),
    promptAttribute: words.includes('prompt_attribute'),
    requireMa: words.includes('require_message_authenticator'),
    failsClosed: control === 'required' || control === 'requisite' || /default=(die|bad)/.test(control),
    afterPassword: lines.slice(0, index).some((l) => /^@include\s+common-auth$/.test(l) || /^auth\s.*pam_unix\.so/.test(l)),
  }
}

/** The servers a pam_radius server file names (comments and blank lines skipped). */
export function parseServerFile(text: string): {server: string; hasSecret: boolean; timeout?: number}[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((l) => {
      const [server, secret, timeout] = l.split(/\s+/)
      return {server, hasSecret: Boolean(secret), timeout: timeout === undefined ? undefined : Number(timeout)}
    })
}
