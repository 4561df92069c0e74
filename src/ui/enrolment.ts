import type {EnrolmentView} from '../core/enrol.js'
import {groupKey} from '../core/uri.js'

export type QrChoice = 'terminal' | 'small' | 'none'

/** The QR code, the key in groups of four for typing, and the URI. */
export async function renderEnrolment(view: EnrolmentView, qr: QrChoice): Promise<string> {
  const parts: string[] = []
  if (qr !== 'none') {
    const {renderQr} = await import('./qr.js')
    parts.push(await renderQr(view.uri, qr))
  }
  parts.push(`user:   ${view.user}`, `key:    ${groupKey(view.secret)}`, `uri:    ${view.uri}`)
  if (view.interval !== 30 || view.digits !== 6) parts.push(`codes:  ${view.digits} digits every ${view.interval} s`)
  return parts.join('\n')
}

export const INTERVAL_WARNING = 'Google Authenticator only supports a 30 second interval; use an app that supports other intervals'
