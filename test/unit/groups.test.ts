import {describe, expect, it} from 'vitest'
import {checkGroupName, groupMembers, groupUsers, parseGroupLine} from '../../src/core/groups.js'

const PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'carol:x:1001:500::/home/carol:/bin/sh',
  'dave:x:1002:600::/home/dave:/bin/sh',
  'erin:x:1003:500::/h:/bin/sh',
].join('\n')

describe('a group as NSS sees it', () => {
  it('is its member list, then the users whose primary group it is, each once', () => {
    const group = parseGroupLine('ops:x:500:alice,carol\n')!
    expect(group).toEqual({name: 'ops', gid: 500, members: ['alice', 'carol']})
    expect(groupUsers(group, PASSWD)).toEqual(['alice', 'carol', 'erin'])
  })

  it('may have only primary members', () => {
    expect(groupUsers(parseGroupLine('solo:x:600:')!, PASSWD)).toEqual(['dave'])
  })

  it('refuses the whole group when a member is not a username tfactl accepts', () => {
    expect(() => groupUsers(parseGroupLine('ad:x:700:bob@EXAMPLE.COM')!, PASSWD)).toThrow(/group "ad": member invalid username "bob@EXAMPLE.COM"/)
  })

  it.each(['ops', 'domain users', 'Domain-Admins', 'a_b.c'])('accepts the group name %j', (name) => {
    expect(checkGroupName(name)).toBe(name)
  })

  it.each(['', '-ops', '1000', 'a:b', 'a,b', 'a\nb', ' ops', 'ops '])('refuses the group name %j', (name) => {
    expect(() => checkGroupName(name)).toThrow(/invalid group name/)
  })
})

describe('groupMembers', () => {
  const source = {group: (name: string) => (name === 'ops' ? 'ops:x:500:alice' : undefined), passwd: () => PASSWD}

  it('asks NSS for the group, then for the users whose primary group it is', () => {
    expect(groupMembers('ops', source)).toEqual(['alice', 'carol', 'erin'])
  })

  it('refuses an unknown group, and a bad name before asking NSS at all (exit 2)', () => {
    expect(() => groupMembers('nope', source)).toThrow(/no group "nope"/)
    const asked: string[] = []
    expect(() =>
      groupMembers('-x', {
        ...source,
        group: (n) => {
          asked.push(n)
          return undefined
        },
      }),
    ).toThrow(/invalid group name/)
    expect(asked).toEqual([])
  })
})
