// The database store's MACs (src/store/postgres/mac.ts) are the bytes they have always been:
// HMAC-SHA256 under HMAC-SHA256(key, label), over the canonical text. Rows and settings written
// before the MACs were made through src/core/mac.ts must still match.
import {createHmac, randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {DEFAULT_SETTINGS} from '../../src/core/model.js'
import {canonicalSettings, macMatches, rowMac, rowMacMatches, settingsMac} from '../../src/store/postgres/mac.js'

const reference = (key: Buffer, label: string, text: string) =>
  createHmac('sha256', createHmac('sha256', key).update(label).digest()).update(text).digest('base64url')

describe('database store MACs', () => {
  it('settings and rows: the same MAC as HMAC-SHA256 under the labelled subkey, for texts short and long', () => {
    for (let i = 0; i < 100; i++) {
      const key = randomBytes(32)
      const settings = {...DEFAULT_SETTINGS, window: i % 5, enabled: i % 2 === 0}
      expect(settingsMac(key, 'k1', settings)).toBe(reference(key, 'tfactl settings mac v1', canonicalSettings('k1', settings)))
      // keys already sorted, no nesting: the canonical text is the text itself
      const data = JSON.stringify({failures: i, secret: `aes256gcm:${randomBytes(10 + i * 8).toString('base64')}`, z: null})
      const mac = rowMac(key, 'k1', `u${i}`, data)
      expect(mac).toBe(reference(key, 'tfactl user row mac v1', JSON.stringify(['k1', `u${i}`, data])))
      expect(rowMacMatches(key, 'k1', `u${i}`, data, mac)).toBe(true)
      expect(rowMacMatches(randomBytes(32), 'k1', `u${i}`, data, mac)).toBe(false)
      expect(macMatches(key, 'k1', settings, settingsMac(key, 'k1', settings))).toBe(true)
    }
  })
})
