// doctor's checks as a table: facts about a host in, findings out (src/core/doctor.ts). The
// command only gathers the facts; every rule is here, without a host to break.
import {describe, expect, it} from 'vitest'
import {type Check, type DoctorFacts, diagnose, pamLineCheck} from '../../src/core/doctor.js'
import {emptyDoc, newUserRecord, type Settings} from '../../src/core/model.js'
import {pamOathLine, parseUsersFile, renderUsersFile, oathUsers} from '../../src/core/oath.js'
import {findAuthLine, pamRadiusLine} from '../../src/core/pam.js'

const OATH = '/etc/users.oath'
const PAM = '/etc/pam.d/sshd'
const RADIUS_CONF = '/etc/tfactl/pam_radius_auth.conf'
const SECRET = 'JBSWY3DPEHPK3PXP'

/** A store with 2FA and SSH 2FA on, alice enrolled, and the users file named (unless `settings` says otherwise). */
function doc(settings: Partial<Settings> = {}) {
  const d = emptyDoc()
  d.settings = {...d.settings, enabled: true, ssh: true, oathFile: OATH, ...settings}
  d.users.set('alice', {...newUserRecord(), secret: SECRET, createdAt: new Date(0).toISOString()})
  return d
}

const goodPam = (window = 1) => `@include common-auth\n${pamOathLine(OATH, window)}\n`
const radiusPam = (line = pamRadiusLine(RADIUS_CONF)) => `@include common-auth\n${line}\n`
const freshFile = (d = doc()) => ({mode: 0o600, uid: 0, entries: parseUsersFile(renderUsersFile(oathUsers(d), [], Date.now(), d.settings.window))})

/** Everything in order: NTP, a valid store, a fresh users file, pam_oath after the password, sshd ready. */
function healthy(over: Partial<DoctorFacts> = {}, d = doc()): DoctorFacts {
  return {
    clock: true,
    store: {findings: [{check: 'store', status: 'ok', message: 'private'}], doc: d, keepsUsersFile: true},
    pam: {path: PAM, text: goodPam(d.settings.window)},
    usersFile: {path: OATH, file: freshFile(d), leftovers: {lock: false, pamNew: false, temps: []}},
    sshd: {
      config: '/etc/ssh/sshd_config',
      settings: new Map([
        ['usepam', 'yes'],
        ['kbdinteractiveauthentication', 'yes'],
      ]),
    },
    ...over,
  }
}

const find = (checks: Check[], name: string) => checks.filter((c) => c.check === name)
const leftovers = {lock: false, pamNew: false, temps: [] as string[]}

describe('doctor: facts to findings', () => {
  it('finds nothing on a healthy host, in the documented order', () => {
    const checks = diagnose(healthy())
    expect(checks.map((c) => [c.check, c.status])).toEqual([
      ['clock', 'ok'],
      ['store', 'ok'],
      ['users file', 'ok'],
      ['sshd PAM', 'ok'],
      ['sshd settings', 'ok'],
    ])
  })

  it.each<[string, DoctorFacts, string, Check['status'], RegExp, string?]>([
    ['a clock that is not synchronised', healthy({clock: false}), 'clock', 'finding', /not NTP-synchronised/],
    ['a clock nobody can tell about', healthy({clock: undefined}), 'clock', 'unknown', /cannot tell/],
    ['a missing users file', healthy({usersFile: {path: OATH, leftovers}}), 'users file', 'finding', /is missing: pam_oath refuses every password login/],
    ['a users file that cannot be read', healthy({usersFile: {path: OATH, error: 'EACCES', leftovers}}), 'users file', 'finding', /EACCES/],
    [
      'a users file others can read',
      healthy({usersFile: {path: OATH, file: {...freshFile(), mode: 0o644}, leftovers}}),
      'users file',
      'finding',
      /must be root's, mode 600 \(it is uid 0, mode 644\)/,
    ],
    [
      'a stale users file',
      healthy({usersFile: {path: OATH, file: {...freshFile(), entries: []}, leftovers}}),
      'users file',
      'finding',
      /stale \(alice missing\)/,
    ],
    [
      'a users file lock nobody holds',
      healthy({usersFile: {path: OATH, file: freshFile(), leftovers: {...leftovers, lock: true}, lockHolders: ''}}),
      'users file',
      'finding',
      /no process has it open/,
      'tfactl twofactor:disable --force',
    ],
    [
      'a users file lock a login holds',
      healthy({usersFile: {path: OATH, file: freshFile(), leftovers: {...leftovers, lock: true}, lockHolders: 'pid 7 (sshd)'}}),
      'users file',
      'finding',
      /open in pid 7 \(sshd\): a login is running/,
    ],
    [
      "pam_oath's .new left behind",
      healthy({usersFile: {path: OATH, file: freshFile(), leftovers: {...leftovers, pamNew: true}}}),
      'users file',
      'finding',
      /\.new exists/,
      'tfactl ssh:sync',
    ],
    [
      'SSH 2FA on and no users file named',
      healthy({usersFile: undefined}, doc({oathFile: null})),
      'users file',
      'finding',
      /no pam_oath users file is configured/,
    ],
    ['a PAM file without pam_oath', healthy({pam: {path: PAM, text: '@include common-auth\n'}}), 'sshd PAM', 'finding', /does not use pam_oath/],
    ['a PAM file that cannot be read', healthy({pam: {path: PAM, error: 'ENOENT'}}), 'sshd PAM', 'unknown', /cannot read \/etc\/pam.d\/sshd: ENOENT/],
    ['pam_oath with another window', healthy({pam: {path: PAM, text: goodPam(4)}}), 'sshd PAM', 'finding', /its window is 4, the store's is 1/],
    [
      'pam_oath before the password module',
      healthy({pam: {path: PAM, text: `${pamOathLine(OATH, 1)}\n@include common-auth\n`}}),
      'sshd PAM',
      'finding',
      /does not come after the password module/,
    ],
    [
      'sshd without KbdInteractiveAuthentication',
      healthy({
        sshd: {
          config: 'c',
          settings: new Map([
            ['usepam', 'yes'],
            ['kbdinteractiveauthentication', 'no'],
          ]),
        },
      }),
      'sshd settings',
      'finding',
      /sshd needs/,
    ],
    [
      'sshd settings that say nothing',
      healthy({sshd: {config: 'c', settings: new Map()}}),
      'sshd settings',
      'unknown',
      /does not say usepam, kbdinteractiveauthentication/,
    ],
    ['sshd settings that cannot be read', healthy({sshd: {config: 'c'}}), 'sshd settings', 'unknown', /cannot read sshd's settings from c/],
    [
      'pam_radius_auth that lets logins on when the responder is down',
      healthy({
        pam: {path: PAM, text: radiusPam(`auth optional pam_radius_auth.so conf=${RADIUS_CONF} skip_passwd prompt_attribute`)},
        radiusConf: {path: RADIUS_CONF, uid: 0, mode: 0o100600, text: '127.0.0.1:1812 s3cret 6\n'},
      }),
      'sshd PAM',
      'finding',
      /its control lets a login on/,
    ],
    [
      'pam_radius_auth 3.0 without require_message_authenticator',
      healthy({
        pam: {path: PAM, text: radiusPam()},
        radiusConf: {path: RADIUS_CONF, uid: 0, mode: 0o100600, text: '127.0.0.1:1812 s3cret 6\n'},
        pamRadiusRequireMa: true,
      }),
      'sshd PAM',
      'finding',
      /without require_message_authenticator .*: use ".* require_message_authenticator"/,
    ],
    [
      'a RADIUS server file others can read',
      healthy({pam: {path: PAM, text: radiusPam()}, radiusConf: {path: RADIUS_CONF, uid: 0, mode: 0o100644, text: '127.0.0.1:1812 s3cret 6\n'}}),
      'radius servers',
      'finding',
      /must be root's, mode 600/,
    ],
    [
      'a RADIUS timeout shorter than the fail delay',
      healthy(
        {pam: {path: PAM, text: radiusPam()}, radiusConf: {path: RADIUS_CONF, uid: 0, mode: 0o100600, text: '127.0.0.1:1812 s3cret 1\n'}},
        doc({failDelay: 2000}),
      ),
      'radius servers',
      'finding',
      /a timeout of 1 s is not longer than the fail delay/,
    ],
    [
      'a RADIUS server without a secret',
      healthy({pam: {path: PAM, text: radiusPam()}, radiusConf: {path: RADIUS_CONF, uid: 0, mode: 0o100600, text: '127.0.0.1:1812\n'}}),
      'radius servers',
      'finding',
      /no shared secret for 127.0.0.1:1812/,
    ],
    [
      'a missing RADIUS server file',
      healthy({pam: {path: PAM, text: radiusPam()}, radiusConf: {path: RADIUS_CONF, error: 'ENOENT'}}),
      'radius servers',
      'finding',
      /cannot read .* \(ENOENT\)/,
    ],
  ])('reports %s', (_, facts, name, status, message, fix) => {
    const found = find(diagnose(facts), name)
    expect(found.map((c) => c.status)).toContain(status)
    const c = found.find((x) => x.status === status)!
    expect(c.message).toMatch(message)
    expect(c.fix).toBe(fix)
  })

  it('skips what a database store does not keep, and checks RADIUS instead', () => {
    const d = doc({oathFile: null})
    const db = healthy({store: {findings: [], doc: d, keepsUsersFile: false}, usersFile: undefined, pam: {path: PAM, text: '@include common-auth\n'}})
    expect(diagnose(db).map((c) => [c.check, c.status])).toEqual([
      ['clock', 'ok'],
      ['users file', 'skipped'],
      ['sshd PAM', 'skipped'],
      ['sshd settings', 'skipped'],
    ])
    const viaRadius = {...db, pam: {path: PAM, text: radiusPam()}, radiusConf: {path: RADIUS_CONF, uid: 0, mode: 0o100600, text: '127.0.0.1:1812 s3cret 6\n'}}
    expect(diagnose(viaRadius).map((c) => [c.check, c.status])).toEqual([
      ['clock', 'ok'],
      ['users file', 'skipped'],
      ['sshd PAM', 'ok'],
      ['radius servers', 'ok'],
      ['sshd settings', 'ok'],
    ])
  })

  it('stops after the store when the store cannot be read, with its fix', () => {
    const broken = healthy({store: {findings: [{check: 'store', status: 'finding', message: 'bad', fix: 'tfactl store:restore'}], keepsUsersFile: true}})
    expect(diagnose(broken)).toEqual([
      {check: 'clock', status: 'ok', message: 'NTP-synchronised'},
      {check: 'store', status: 'finding', message: 'bad', fix: 'tfactl store:restore'},
    ])
  })

  it('skips the SSH checks while SSH 2FA is off', () => {
    const checks = diagnose(healthy({}, doc({ssh: false})))
    for (const name of ['sshd PAM', 'sshd settings']) expect(find(checks, name)).toEqual([{check: name, status: 'skipped', message: 'SSH 2FA is off'}])
  })
})

describe('one PAM line check for pam_oath and pam_radius_auth', () => {
  it.each([
    ['pam_oath', pamOathLine(OATH, 1)],
    ['pam_radius_auth', pamRadiusLine(RADIUS_CONF)],
  ])('%s: after the password module or not, with the same wording', (module, line) => {
    const after = findAuthLine(`@include common-auth\n${line}\n`, module)!
    const before = findAuthLine(`${line}\nauth required pam_unix.so\n`, module)!
    const fix = {line, command: 'tfactl ssh:config'}
    expect(pamLineCheck(PAM, after, [], fix, 'fine')).toEqual({check: 'sshd PAM', status: 'ok', message: 'fine'})
    expect(pamLineCheck(PAM, before, [], fix, 'fine')).toEqual({
      check: 'sshd PAM',
      status: 'finding',
      message: `${PAM}: it does not come after the password module (@include common-auth / pam_unix): use "${line}" (tfactl ssh:config)`,
    })
    expect(pamLineCheck(PAM, before, ['its own problem'], fix, 'fine').message).toMatch(/: its own problem; it does not come after/)
  })

  it('reads only active auth lines of the module asked for', () => {
    expect(findAuthLine(`# auth required pam_oath.so\n`, 'pam_oath')).toBeUndefined()
    expect(findAuthLine(`account required pam_oath.so\n`, 'pam_oath')).toBeUndefined()
    expect(findAuthLine(`auth required pam_oathx.so\n`, 'pam_oath')).toBeUndefined()
    const l = findAuthLine(`auth [success=ok default=die] /lib/security/pam_oath.so usersfile=/x window=3 # note\n`, 'pam_oath')!
    expect(l.control).toBe('[success=ok default=die]')
    expect(l.arg('usersfile')).toBe('/x')
    expect(l.arg('window')).toBe('3')
  })
})
