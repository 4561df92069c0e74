import {readFileSync} from 'node:fs'
import {supportsMessageAuthenticator} from '../core/pam.js'

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
