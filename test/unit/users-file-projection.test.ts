// The pam_oath users file as a projection of a change set (src/store/oathfile/projection.ts),
// driven directly, with no store: what it writes follows from the change set alone while the
// file is in step, and from the whole document otherwise.
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeEach, describe, expect, it} from 'vitest'
import {base32Decode} from '../../src/core/base32.js'
import {newEnrolment} from '../../src/core/enrol.js'
import {type Doc, emptyDoc} from '../../src/core/model.js'
import {activate} from '../../src/core/users.js'
import {type ChangeSet, changeSet, projectUpdate, type UpdateView} from '../../src/store/change.js'
import {usersFileProjection} from '../../src/store/oathfile/projection.js'
import {usersFileDigest} from '../../src/store/oathfile/sync.js'

const dirs: string[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

let dir: string
let oath: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tfactl-projection-'))
  dirs.push(dir)
  oath = join(dir, 'users.oath')
})

function docWith(users: string[]): Doc {
  const doc = emptyDoc()
  Object.assign(doc.settings, {enabled: true, ssh: true, oathFile: oath})
  for (const user of users) activate(doc, user, newEnrolment(30, 6, Date.now()))
  return doc
}

/** One update through the projection: `fn` changes the document, `change` says what it changed. */
async function project(doc: Doc, mark: string | null, fn: (doc: Doc) => void, change: (before: Doc['settings']) => ChangeSet) {
  const before = {...doc.settings}
  // a view with onLoad: the store reads records lazily (here they are all in the document already)
  const view: UpdateView = {mark, onLoad: () => {}, protect: []}
  let saved: string | null | undefined
  const {report} = await projectUpdate(doc, usersFileProjection, view, {
    run: async () => fn(doc),
    change: () => change(before),
    save: async (m) => {
      saved = m
    },
  })
  return {mark: saved, report}
}

/** The file written from every record (the store's first write: no mark yet). */
const firstWrite = (doc: Doc) =>
  project(
    doc,
    null,
    () => {},
    (before) => changeSet(doc.users.keys(), before, doc, true),
  )

const lineOf = (text: string, user: string) => text.split('\n').find((l) => l.split('\t')[1] === user)
const hexOf = (doc: Doc, user: string) => base32Decode(doc.users.get(user)!.secret!)!.toString('hex')

describe('the pam_oath users file as a projection of a change set', () => {
  it("rewrites only the lines of the change set's users while the file is in step, and carries every other byte over", async () => {
    const doc = docWith(['alice', 'bob', 'carol'])
    const first = await firstWrite(doc)
    const written = readFileSync(oath, 'utf8')
    expect(first.mark).toBe(usersFileDigest(written))
    expect(first.report?.changed).toBe(true)

    // bob renewed (in the change set); carol changed too, but the change set does not name her
    const bobBefore = lineOf(written, 'bob')
    const second = await project(
      doc,
      first.mark!,
      (d) => {
        activate(d, 'bob', newEnrolment(30, 6, Date.now()))
        activate(d, 'carol', newEnrolment(30, 6, Date.now()))
      },
      (before) => changeSet(['bob'], before, doc),
    )
    const after = readFileSync(oath, 'utf8')
    expect(lineOf(after, 'bob')).not.toBe(bobBefore)
    expect(lineOf(after, 'bob')?.split('\t')[3]).toBe(hexOf(doc, 'bob')) // bob's new secret
    expect(lineOf(after, 'carol')?.split('\t')[3]).not.toBe(hexOf(doc, 'carol')) // not in the change set: not rewritten
    expect(after.replace(lineOf(after, 'bob')!, '')).toBe(written.replace(bobBefore!, '')) // nothing else moved: carol's line is her old one
    expect(second.mark).toBe(usersFileDigest(after))
    expect(second.report).toMatchObject({path: oath, changed: true})
  })

  it("drops the line of a user the change set says was removed, and puts a new user's line in name order", async () => {
    const doc = docWith(['alice', 'carol'])
    const {mark} = await firstWrite(doc)
    const next = await project(
      doc,
      mark!,
      (d) => {
        d.users.delete('alice')
        activate(d, 'bob', newEnrolment(30, 6, Date.now()))
      },
      (before) => changeSet(['alice', 'bob'], before, doc),
    )
    const text = readFileSync(oath, 'utf8')
    expect(
      text
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => l.split('\t')[1]),
    ).toEqual(['bob', 'carol'])
    expect(next.mark).toBe(usersFileDigest(text))
  })

  it('finds and places lines by bytes when names are not ASCII', async () => {
    const doc = docWith(['ålesund', 'zoë'])
    const {mark} = await firstWrite(doc)
    const first = await project(
      doc,
      mark!,
      (d) => activate(d, 'jürgen', newEnrolment(30, 6, Date.now())),
      (before) => changeSet(['jürgen'], before, doc),
    )
    const second = await project(
      doc,
      first.mark!,
      (d) => activate(d, 'zoë', newEnrolment(30, 6, Date.now())),
      (before) => changeSet(['zoë'], before, doc),
    )
    const text = readFileSync(oath, 'utf8')
    const users = text
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split('\t')[1])
    expect(users).toEqual([...users].sort()) // the sorted order, wherever the multi-byte names fall
    expect(users.sort()).toEqual(['jürgen', 'zoë', 'ålesund'].sort())
    for (const user of users) expect(lineOf(text, user)?.split('\t')[3]).toBe(hexOf(doc, user))
    expect(second.mark).toBe(usersFileDigest(text))
  })

  it('renders the whole file from the document when the file is not what the store last wrote', async () => {
    const doc = docWith(['alice', 'bob'])
    const {mark} = await firstWrite(doc)
    writeFileSync(oath, `${readFileSync(oath, 'utf8')}# a hand edit\n`) // out of step with the mark
    const aliceOld = lineOf(readFileSync(oath, 'utf8'), 'alice')
    await project(
      doc,
      mark!,
      (d) => activate(d, 'alice', newEnrolment(30, 6, Date.now())),
      (before) => changeSet([], before, doc), // names nobody: only a whole render picks alice up
    )
    const text = readFileSync(oath, 'utf8')
    expect(lineOf(text, 'alice')).not.toBe(aliceOld)
    expect(text).not.toContain('# a hand edit')
  })

  it("catches up after a crash between the store's write and the file's: the next update renders the whole file", async () => {
    const doc = docWith(['alice', 'bob'])
    await firstWrite(doc)
    const before = {...doc.settings}
    const run = await usersFileProjection.open(doc, {mark: null, onLoad: () => {}, protect: []})
    activate(doc, 'bob', newEnrolment(30, 6, Date.now()))
    const mark = await run.plan(doc, changeSet(['bob'], before, doc)) // the store saves this mark…
    run.release() // …and the process dies before the users file is written
    expect(lineOf(readFileSync(oath, 'utf8'), 'bob')?.split('\t')[3]).not.toBe(hexOf(doc, 'bob'))
    await project(
      doc,
      mark!,
      () => {},
      (b) => changeSet([], b, doc),
    ) // a change naming nobody
    expect(lineOf(readFileSync(oath, 'utf8'), 'bob')?.split('\t')[3]).toBe(hexOf(doc, 'bob'))
  })

  it('writes nothing and saves nothing when a touched user cannot be expressed in the file', async () => {
    const doc = docWith(['alice'])
    const {mark} = await firstWrite(doc)
    const text = readFileSync(oath, 'utf8')
    let saved = false
    await expect(
      projectUpdate(
        doc,
        usersFileProjection,
        {mark: mark!, onLoad: () => {}, protect: []},
        {
          run: async () => {
            const e = newEnrolment(30, 6, Date.now())
            activate(doc, 'bob', {...e, algorithm: 'SHA256'}) // pam_oath checks HMAC-SHA1 only
          },
          change: () => changeSet(['bob'], {...doc.settings}, doc),
          save: async () => {
            saved = true
          },
        },
      ),
    ).rejects.toThrow(/bob/)
    expect(saved).toBe(false)
    expect(readFileSync(oath, 'utf8')).toBe(text)
  })
})
