import {pg} from './client.js'

/** The error a refused authentication request fails the connection with (exit 3 through PgStore). */
export const INSECURE_AUTH = 'TFACTL_INSECURE_AUTH'

interface Internals {
  connection: {stream: {encrypted?: boolean; destroy(): void}; emit(event: 'error', error: Error): boolean}
  _handleAuthCleartextPassword(msg: unknown): void
  _handleAuthMD5Password(msg: unknown): void
}

/**
 * node-postgres's client with libpq's `require_auth` for the methods that give the password
 * away: a server that asks for it in clear or as MD5 (a replayable hash of it) over a connection
 * without TLS gets nothing, and the connection fails. Over TLS both are allowed, as is SCRAM
 * everywhere (it never sends the password and proves the server knows it). Whoever answers at
 * the database's address — a local user who bound its TCP port while PostgreSQL was down — would
 * otherwise be sent PGPASSWORD.
 */
export class GuardedClient extends pg.Client {
  private refuse(method: string): boolean {
    const self = this as unknown as Internals
    if (self.connection.stream.encrypted === true) return false
    const error = Object.assign(
      new Error(
        `the server asked for the password ${method} over a connection without TLS; refused (use sslmode=verify-full, or SCRAM: password_encryption = scram-sha-256)`,
      ),
      {code: INSECURE_AUTH},
    )
    self.connection.emit('error', error)
    self.connection.stream.destroy()
    return true
  }

  _handleAuthCleartextPassword(msg: unknown): void {
    if (!this.refuse('in clear')) (pg.Client.prototype as unknown as Internals)._handleAuthCleartextPassword.call(this, msg)
  }

  _handleAuthMD5Password(msg: unknown): void {
    if (!this.refuse('as MD5')) (pg.Client.prototype as unknown as Internals)._handleAuthMD5Password.call(this, msg)
  }
}
