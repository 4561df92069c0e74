// Host lists in a store URL, read as libpq reads them (the connection part is in test/cli/ha.test.ts).
import {describe, expect, it} from 'vitest'
import {TfaError} from '../../src/core/errors.js'
import {poolConfig} from '../../src/store/postgres/connect.js'
import {endpointName} from '../../src/store/postgres/hosts.js'

const hosts = (url: string) => poolConfig(url, 2).hosts.map(endpointName)

describe('a store URL naming several hosts', () => {
  it.each([
    ['postgresql://u@db1,db2/tfactl', ['db1:5432', 'db2:5432']],
    ['postgresql://u@db1:5433,db2/tfactl', ['db1:5433', 'db2:5432']],
    ['postgresql://u@db1:5433,db2:5434,db3:5435/tfactl', ['db1:5433', 'db2:5434', 'db3:5435']],
    ['postgresql://u@[::1]:5433,db2/tfactl', ['[::1]:5433', 'db2:5432']],
    ['postgresql://u@db1,db2/tfactl?port=6000', ['db1:6000', 'db2:6000']],
    ['postgresql://u@/tfactl?host=db1,db2&port=5433,5434', ['db1:5433', 'db2:5434']],
    ['postgresql://u@/tfactl?host=/run/pg1,/run/pg2&port=5433', ['/run/pg1/.s.PGSQL.5433', '/run/pg2/.s.PGSQL.5433']],
    ['postgresql://u:secret@db1:5433/tfactl', ['db1:5433']],
  ])('%s → %j', (url, want) => {
    expect(hosts(url)).toEqual(want)
  })

  it('keeps user, password and database of a multi-host URL', () => {
    const c = poolConfig('postgresql://alice:s3cret@db1,db2/fleet?sslmode=disable', 2)
    expect(c).toMatchObject({user: 'alice', password: 's3cret', database: 'fleet', host: 'db1', port: 5432})
  })

  it.each([
    ['', 'read-write'],
    ['?target_session_attrs=read-write', 'read-write'],
    ['?target_session_attrs=primary', 'primary'],
    ['?target_session_attrs=any', 'any'],
  ])('target_session_attrs%s → %s (read-write when not given: every login writes)', (query, want) => {
    expect(poolConfig(`postgresql://u@db1,db2/tfactl${query}`, 2).attrs).toBe(want)
  })

  it.each([
    ['postgresql://u@db1,db2/tfactl?target_session_attrs=writable', /target_session_attrs=writable is not one of read-write, primary, any/],
    ['postgresql://u@db1,db2/tfactl?target_session_attrs=standby', /every login writes/],
    ['postgresql://u@db1,db2/tfactl?target_session_attrs=prefer-standby', /every login writes/],
    ['postgresql://u@/tfactl?host=a,b,c&port=1,2', /3 hosts but 2 ports/],
    ['postgresql://u@db1,db2:x/tfactl', /port x is not a number/],
    ['postgresql://u@db1:x,db2/tfactl', /not a usable PostgreSQL URL/],
    ['postgresql://u:pw@db1:99x/tfactl', /not a usable PostgreSQL URL|port 99x is not a number/],
  ])('refuses %s (exit 2, the password hidden)', (url, message) => {
    let error: unknown
    try {
      poolConfig(url, 2)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(TfaError)
    expect((error as TfaError).exit).toBe(2)
    expect((error as Error).message).toMatch(message)
    expect((error as Error).message).not.toContain(':pw@')
  })
})
