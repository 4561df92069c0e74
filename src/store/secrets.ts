import {createCipheriv, createDecipheriv, randomBytes} from 'node:crypto'
import {storeError} from '../core/errors.js'

/** Secrets at rest: AES-256-GCM under the key in `tfactl.key`, bound to the user's name. */
const PREFIX = 'aes256gcm:'

/**
 * How many secrets this process sealed and opened: the work a command does on the store, counted
 * rather than timed (a one-user change must not open or seal the other users' secrets).
 */
export const secretWork = {encrypted: 0, decrypted: 0}

export function encryptSecret(key: Buffer, user: string, secret: string): string {
  secretWork.encrypted++
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(Buffer.from(user))
  const body = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()])
  return PREFIX + Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64')
}

export function decryptSecret(key: Buffer, user: string, sealed: string, where: string): string {
  secretWork.decrypted++
  if (!sealed.startsWith(PREFIX)) throw storeError(`${where}: secret of ${JSON.stringify(user)} is not encrypted`)
  const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64')
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12)).setAAD(Buffer.from(user))
    decipher.setAuthTag(raw.subarray(raw.length - 16))
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8')
  } catch {
    throw storeError(`${where}: cannot decrypt the secret of ${JSON.stringify(user)}: wrong or damaged key file`)
  }
}

export const newKey = (): Buffer => randomBytes(32)
