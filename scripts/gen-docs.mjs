// Generates the command reference (docs/commands.md) and the man pages (man/*.1) from the
// commands' own metadata: oclif.manifest.json (written by `npm run build`) and package.json's
// oclif topics. The output is checked in; `npm run docs` regenerates it and
// `node scripts/gen-docs.mjs --check` (part of `npm run lint`) fails while it is stale.
// `--dir DIR` writes (or checks) DIR/docs and DIR/man instead of the project's.
//
// What the commands do not declare (the exit-code contract, environment, files) is the data
// below; a command may add its own `static exitCodes = {2: 'why', …}`, shown with it.
import {existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

const ROOT = join(import.meta.dirname, '..')
const BIN = 'tfactl'

/** The exit-code contract (src/core/errors.ts EXIT), in the words users read. */
const EXIT_CODES = [
  [0, 'ok; login allowed'],
  [1, 'login denied; enrolment cancelled; user:secret:confirm with a wrong code; ssh:sync --check found the users file stale; doctor has findings'],
  [2, 'invalid usage or input (a bad flag, username, file line, store URL or config file); nothing changed'],
  [
    3,
    'the store is unreadable, corrupt, of a newer version, unsafe (permissions, a link), locked too long or lost, or its key is missing or wrong; the database is unreachable or a statement failed',
  ],
  [4, 'not permitted (STIG mode, not root, another user’s store, a missing or wrong --code proof under sudo, a locked-out user)'],
]

/** Environment variables tfactl reads besides the flags' own (found from the metadata). */
const ENVIRONMENT = [
  ['TFACTL_CONFIG', 'the config file ({"store", "keyFile"}); default /etc/tfactl/config.json when run as root'],
  ['SUDO_USER', 'under sudo, the user a command acts on when no username is given (self-service)'],
  ['XDG_STATE_HOME', 'where a user’s own store lives when there is no system store (default ~/.local/state)'],
  ['XDG_RUNTIME_DIR', 'where login:prompt keeps its once-per-session markers (root: /run/tfactl)'],
  ['XDG_SESSION_ID', 'the login session login:prompt invites once (else the kernel session id)'],
  ['PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE', 'libpq’s, for a PostgreSQL store (a password is read from PGPASSWORD or ~/.pgpass)'],
  ['PGTARGETSESSIONATTRS', 'which server of a store URL’s host list to use when the URL names none: read-write (default), primary or any'],
  ['PGSSLMODE', 'libpq’s sslmode when the store URL names none (prefer verify-full, or the Unix socket)'],
  ['NO_COLOR, TERM', 'no colour when NO_COLOR is set or TERM is dumb'],
]

const FILES = [
  ['/var/lib/tfactl/store.json', 'the system store (settings and per-user records, secrets encrypted), 0600 in a 0700 directory'],
  ['$XDG_STATE_HOME/tfactl/store.json', 'a user’s own store, when there is no system store'],
  ['<store>.key, .bak, .lock, .journal, .audit.log', 'the store’s key, previous version, lock, login journal and audit trail, beside it (0600)'],
  ['/etc/tfactl/config.json', 'optional: the store and key file to use (TFACTL_CONFIG)'],
  ['/etc/tfactl/tfactl.key', 'a database store’s key; the same file on every host (0600)'],
  ['/etc/users.oath', 'pam_oath’s users file (ssh:sync, --oath-file); holds secrets in clear (0600, root)'],
  ['/etc/tfactl/radius-clients', 'radius:serve’s clients and their shared secrets (0600)'],
  ['/etc/tfactl/pam_radius_auth.conf', 'pam_radius_auth’s server file (ssh:config --radius), 0600, root'],
]

const SEE_ALSO_SYSTEM = ['oathtool(1)', 'sshd(8)', 'sshd_config(5)', 'pam(8)', 'sudoers(5)']

// ---- the metadata --------------------------------------------------------------------------

function load() {
  const manifestFile = join(ROOT, 'oclif.manifest.json')
  if (!existsSync(manifestFile)) fail('oclif.manifest.json is missing: run `npm run docs` (it builds first)')
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'))
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  const commands = Object.values(manifest.commands)
    .filter((c) => !c.hidden && c.pluginType === 'core')
    .sort((a, b) => a.id.localeCompare(b.id))
  return {commands, pkg, topics: pkg.oclif.topics ?? {}}
}

const tpl = (s) => String(s ?? '').replaceAll('<%= config.bin %>', BIN)

/** A description as paragraphs, each a list of blocks: plain text, or `- ` list items. */
function paragraphs(text) {
  return tpl(text)
    .split(/\n\s*\n/)
    .map((p) => {
      const blocks = []
      for (const line of p.split('\n').map((l) => l.trim())) {
        if (!line) continue
        if (line.startsWith('- ')) blocks.push({item: true, text: line.slice(2)})
        else if (blocks.length > 0) blocks[blocks.length - 1].text += ` ${line}`
        else blocks.push({item: false, text: line})
      }
      return blocks
    })
    .filter((b) => b.length > 0)
}

const summary = (c) => (c.summary ? tpl(c.summary) : (paragraphs(c.description)[0]?.[0]?.text ?? ''))
const body = (c) => (c.summary ? paragraphs(c.description) : paragraphs(c.description).slice(1))
const globalFlags = (c) => Object.values(c.flags).filter((f) => f.helpGroup === 'GLOBAL' && !f.hidden)
const ownFlags = (c) =>
  Object.values(c.flags)
    .filter((f) => f.helpGroup !== 'GLOBAL' && !f.hidden)
    .sort((a, b) => a.name.localeCompare(b.name))
const args = (c) => Object.values(c.args ?? {}).filter((a) => !a.hidden)

const metavar = (f) => f.helpValue ?? (f.options ? f.options.join('|') : f.name.toUpperCase().replaceAll('-', '_'))
const argName = (a) => a.name.toUpperCase()
const examples = (c) => (c.examples ?? []).map((e) => (typeof e === 'string' ? {command: tpl(e)} : {command: tpl(e.command), description: tpl(e.description)}))

/** The usage line's pieces: [text, optional]. */
function usage(c) {
  const parts = []
  for (const a of args(c)) parts.push({text: `${argName(a)}${c.strict === false ? '...' : ''}`, optional: !a.required, arg: true})
  for (const f of ownFlags(c)) {
    const name = f.type === 'boolean' && f.allowNo ? `--[no-]${f.name}` : `--${f.name}`
    parts.push({text: name, value: f.type === 'option' ? metavar(f) : null, optional: !f.required, multiple: f.multiple})
  }
  return parts
}

/** What a flag's reader needs besides its description: default, env, constraints. */
function flagNotes(f) {
  const notes = []
  if (f.char) notes.push(`Short: -${f.char}.`)
  if (f.default !== undefined && f.default !== false) notes.push(`Default: ${[].concat(f.default).join(', ')}.`)
  if (f.env) notes.push(`Environment: ${f.env}.`)
  if (f.required) notes.push('Required.')
  if (f.multiple) notes.push('May be given more than once.')
  if (f.dependsOn?.length) notes.push(`Only with ${f.dependsOn.map((d) => `--${d}`).join(', ')}.`)
  if (f.exclusive?.length) notes.push(`Not with ${f.exclusive.map((d) => `--${d}`).join(', ')}.`)
  return notes
}

/** A description (a fragment, no full stop) followed by its notes as sentences. */
const withNotes = (description, notes) =>
  notes.length === 0 ? description : [description && !/[.!?:]$/.test(description) ? `${description}.` : description, ...notes].filter(Boolean).join(' ')

/** oclif's own --json text says less than the contract does. */
const globalDescription = (f) =>
  f.name === 'json'
    ? 'exactly one JSON document on stdout, never a prompt; errors as {"error": {"message", "code", "exit"}} on stdout'
    : tpl(f.description ?? '')

/** A command of its own (doctor, audit), not a topic of several. */
const isTopLevel = (topic, cmds) => cmds.length === 1 && cmds[0].id === topic

const topicOf = (id) => (id.includes(':') ? id.split(':')[0] : id)

// ---- Markdown ------------------------------------------------------------------------------

// GitHub never reads an intra-word _ as emphasis: names like pam_oath stay as they are
const md = (s) => s.replaceAll('\\', '\\\\').replaceAll('<', '&lt;').replaceAll('*', '\\*')
const anchor = (heading) =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s-]/gu, '')
    .replace(/\s/g, '-')

function mdUsage(c) {
  const pieces = usage(c).map((p) => {
    const t = `${p.text}${p.value ? ` ${p.value}` : ''}${p.multiple ? '...' : ''}`
    return p.optional ? `[${t}]` : t
  })
  return `${BIN} ${[c.id, ...pieces].join(' ')}${globalFlags(c).length ? ' [GLOBAL FLAGS]' : ''}`
}

function mdBlocks(paras) {
  return paras.map((blocks) => blocks.map((b) => (b.item ? `- ${md(b.text)}` : md(b.text))).join('\n')).join('\n\n')
}

function mdCommand(c, level = '###') {
  const out = [`${level} ${c.id}`, '', md(summary(c)), '', '```', mdUsage(c), '```']
  const more = body(c)
  if (more.length) out.push('', mdBlocks(more))
  if (args(c).length) {
    out.push('', 'Arguments:', '')
    for (const a of args(c)) out.push(`- \`${argName(a)}\`: ${md(withNotes(tpl(a.description ?? ''), a.required ? ['Required.'] : []))}`)
  }
  const flags = ownFlags(c)
  if (flags.length) {
    out.push('', 'Flags:', '')
    for (const f of flags) {
      const syntax = `--${f.type === 'boolean' && f.allowNo ? '[no-]' : ''}${f.name}${f.type === 'option' ? ` ${metavar(f)}` : ''}`
      out.push(`- \`${syntax}\`: ${md(withNotes(tpl(f.description ?? ''), flagNotes(f)))}`)
    }
  }
  if (globalFlags(c).length)
    out.push(
      '',
      `Global flags: ${globalFlags(c)
        .map((f) => `\`--${f.name}\``)
        .join(', ')} (see [Global flags](#global-flags)).`,
    )
  if (c.exitCodes) {
    out.push('', 'Exit codes:', '')
    for (const [code, why] of Object.entries(c.exitCodes)) out.push(`- ${code}: ${md(tpl(why))}`)
  }
  const ex = examples(c)
  if (ex.length) {
    out.push('', 'Examples:', '', '```sh')
    for (const e of ex) out.push(...(e.description ? [`# ${e.description}`] : []), e.command)
    out.push('```')
  }
  return out.join('\n')
}

function markdown({commands, pkg, topics}) {
  const groups = topicGroups(commands)
  const allGlobal = uniqueGlobalFlags(commands)
  const out = [
    '# Command reference',
    '',
    '<!-- Generated by scripts/gen-docs.mjs from the commands’ metadata: do not edit; run `npm run docs`. -->',
    '',
    `${md(pkg.description)}. Every command answers \`${BIN} COMMAND --help\`; the same text is in the man pages (\`man ${BIN}\`, \`man ${BIN}-TOPIC\`).`,
    '',
  ]
  for (const [topic, cmds] of groups) {
    if (isTopLevel(topic, cmds)) {
      out.push(`- [${topic}](#${anchor(topic)}): ${md(summary(cmds[0]))}`)
      continue
    }
    out.push(`- ${md(topics[topic]?.description ? `${topic}: ${topics[topic].description}` : topic)}`)
    for (const c of cmds) out.push(`  - [${c.id}](#${anchor(c.id)}): ${md(summary(c))}`)
  }
  out.push('', '## Global flags', '', 'Every command takes these:', '')
  for (const f of allGlobal) {
    const syntax = `--${f.name}${f.type === 'option' ? ` ${metavar(f)}` : ''}`
    out.push(`- \`${syntax}\`: ${md(withNotes(globalDescription(f), flagNotes(f)))}`)
  }
  out.push('', '## Exit codes', '', '| code | meaning |', '|---|---|')
  for (const [code, why] of EXIT_CODES) out.push(`| ${code} | ${md(why)} |`)
  for (const [topic, cmds] of groups) {
    if (isTopLevel(topic, cmds)) {
      out.push('', mdCommand(cmds[0], '##'))
      continue
    }
    out.push('', `## ${topic}`, '')
    if (topics[topic]?.description) out.push(`${md(topics[topic].description)}`, '')
    out.push(cmds.map((c) => mdCommand(c)).join('\n\n'))
  }
  return `${out.join('\n')}\n`
}

function topicGroups(commands) {
  const groups = new Map()
  for (const c of commands) {
    const t = topicOf(c.id)
    if (!groups.has(t)) groups.set(t, [])
    groups.get(t).push(c)
  }
  return groups
}

function uniqueGlobalFlags(commands) {
  const seen = new Map()
  for (const c of commands) for (const f of globalFlags(c)) if (!seen.has(f.name)) seen.set(f.name, f)
  return [...seen.values()].sort((a, b) => a.name.localeCompare(b.name))
}

// ---- roff ----------------------------------------------------------------------------------

/** Text as roff: backslashes and minus signs escaped, non-ASCII as \[uXXXX], no control lines. */
function roff(text) {
  const escaped = [...text.replaceAll('\\', '\\e').replaceAll('-', '\\-')]
    .map((ch) => (ch.codePointAt(0) > 127 ? `\\[u${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}]` : ch))
    .join('')
  return escaped
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n')
}
const bold = (s) => `\\fB${roff(s)}\\fR`
const ital = (s) => `\\fI${roff(s)}\\fR`

function roffBlocks(paras) {
  const out = []
  for (const blocks of paras) {
    out.push('.PP')
    for (const b of blocks) {
      if (b.item) out.push('.IP \\(bu 2')
      out.push(roff(b.text))
    }
  }
  return out
}

/** A synopsis that breaks only between whole options: `[\-\-qr\ \fIMODE\fR]`. */
function roffUsage(c) {
  const pieces = usage(c).map((p) => {
    const name = p.arg ? ital(p.text) : bold(p.text)
    const t = `${name}${p.value ? `\\ ${ital(p.value)}` : ''}${p.multiple ? '...' : ''}`
    return p.optional ? `[${t}]` : t
  })
  if (globalFlags(c).length) pieces.push(`[${ital('GLOBAL FLAGS')}]`)
  return ['.PP', `${bold(`${BIN} ${c.id}`)} ${pieces.join(' ')}`]
}

function roffFlag(f) {
  const syntax = `${bold(`--${f.type === 'boolean' && f.allowNo ? '[no-]' : ''}${f.name}`)}${f.type === 'option' ? ` ${ital(metavar(f))}` : ''}`
  return ['.TP', syntax, roff(withNotes(tpl(f.description ?? ''), flagNotes(f)))]
}

function roffExamples(c) {
  const ex = examples(c)
  if (!ex.length) return []
  const out = ['.PP', 'Examples:', '.RS 4', '.EX']
  for (const e of ex) out.push(...(e.description ? [roff(`# ${e.description}`)] : []), roff(e.command))
  out.push('.EE', '.RE')
  return out
}

function roffCommand(c) {
  const out = [`.SS ${bold(`${BIN} ${c.id}`)}`, ...roffUsage(c), '.PP', roff(summary(c)), ...roffBlocks(body(c))]
  if (args(c).length) {
    out.push('.PP', 'Arguments:')
    for (const a of args(c)) out.push('.TP', ital(argName(a)), roff(withNotes(tpl(a.description ?? ''), a.required ? ['Required.'] : [])))
  }
  const flags = ownFlags(c)
  if (flags.length) {
    out.push('.PP', 'Flags:')
    for (const f of flags) out.push(...roffFlag(f))
  }
  if (c.exitCodes) {
    out.push('.PP', 'Exit status:')
    for (const [code, why] of Object.entries(c.exitCodes)) out.push('.TP', bold(String(code)), roff(tpl(why)))
  }
  out.push(...roffExamples(c))
  return out
}

function header(name, version, title) {
  return [
    `.\\" Generated by scripts/gen-docs.mjs from the commands' metadata: do not edit; run npm run docs.`,
    `.TH ${name.toUpperCase().replaceAll('-', '\\-')} 1 "" "${BIN} ${version}" "${title}"`,
    // no hyphenation, ragged right: option names and paths stay whole
    '.nr HY 0',
    '.nh',
    '.ad l',
  ]
}

function seeAlso(pages) {
  return ['.SH "SEE ALSO"', pages.map((p, i) => `${bold(p.replace(/\(\d\)$/, ''))}${p.match(/\(\d\)$/)[0]}${i < pages.length - 1 ? ',' : ''}`).join('\n')]
}

const pageName = (topic) => `${BIN}-${topic}`

function topicPage(topic, cmds, ctx) {
  const desc = ctx.topics[topic]?.description ?? (cmds.length === 1 ? summary(cmds[0]) : topic)
  const out = [...header(pageName(topic), ctx.pkg.version, 'User Commands'), '.SH NAME', `${roff(pageName(topic))} \\- ${roff(desc)}`, '.SH SYNOPSIS']
  for (const c of cmds) out.push(...roffUsage(c))
  out.push('.SH DESCRIPTION', '.PP', roff(`${desc}.`))
  const subtopics = Object.entries(ctx.topics).filter(([t]) => t.startsWith(`${topic}:`))
  for (const [t, {description}] of subtopics) out.push('.TP', bold(t), roff(description))
  out.push('.SH COMMANDS')
  for (const c of cmds) out.push(...roffCommand(c))
  out.push(...roffGlobalFlags(ctx), ...roffExit(), ...seeAlso([`${BIN}(1)`, ...ctx.pages.filter((p) => p !== pageName(topic)).map((p) => `${p}(1)`)]))
  return `${out.join('\n')}\n`
}

function roffGlobalFlags(ctx) {
  const out = ['.SH "GLOBAL FLAGS"', '.PP', 'Every command takes these:']
  for (const f of ctx.globals) out.push(...roffFlag({...f, description: globalDescription(f)}))
  return out
}

function roffExit() {
  const out = ['.SH "EXIT STATUS"']
  for (const [code, why] of EXIT_CODES) out.push('.TP', bold(String(code)), roff(why))
  return out
}

function mainPage(ctx) {
  const out = [
    ...header(BIN, ctx.pkg.version, 'User Commands'),
    '.SH NAME',
    `${BIN} \\- ${roff(ctx.pkg.description.replace(/^./, (c) => c.toLowerCase()))}`,
    '.SH SYNOPSIS',
    '.PP',
    `${bold(BIN)} ${ital('TOPIC')}${bold(':')}${ital('COMMAND')} [${ital('ARGUMENTS')}] [${ital('FLAGS')}]`,
    '.br',
    `${bold(BIN)} ${ital('TOPIC')}${bold(':')}${ital('COMMAND')} ${bold('--help')}`,
    '.SH DESCRIPTION',
    '.PP',
    roff(
      `${BIN} keeps a global 2FA switch (with SSH 2FA and STIG mode), per-user TOTP secrets enrolled through a QR code, and a login check that applies the rules: replay protection, lockout, recovery codes and one-time admin bypass codes. SSH logins are checked by the system's own PAM modules: pam_oath through a users file, or pam_radius_auth through ${BIN}'s RADIUS responder. The store is a file per host or one PostgreSQL database shared by many hosts.`,
    ),
    '.PP',
    roff(`Each topic has its own page, with every command's flags and examples: ${ctx.pages.map((p) => `${p}(1)`).join(', ')}.`),
    '.SH COMMANDS',
  ]
  for (const [topic, cmds] of ctx.groups) {
    const desc = ctx.topics[topic]?.description
    out.push('.PP', `${bold(topic)}${desc ? ` \\- ${roff(desc)}` : ''} (${bold(pageName(topic))}(1))`)
    out.push('.RS 4')
    for (const c of cmds) out.push('.TP', bold(`${BIN} ${c.id}`), roff(summary(c)))
    out.push('.RE')
  }
  out.push(...roffGlobalFlags(ctx), ...roffExit(), '.SH ENVIRONMENT')
  for (const f of ctx.globals.filter((g) => g.env)) out.push('.TP', bold(f.env), roff(`as --${f.name}`))
  for (const [name, why] of ENVIRONMENT) out.push('.TP', bold(name), roff(why))
  out.push('.SH FILES')
  for (const [name, why] of FILES) out.push('.TP', ital(name), roff(why))
  out.push(...seeAlso([...ctx.pages.map((p) => `${p}(1)`), ...SEE_ALSO_SYSTEM]))
  return `${out.join('\n')}\n`
}

// ---- output --------------------------------------------------------------------------------

function generate() {
  const {commands, pkg, topics} = load()
  const groups = topicGroups(commands)
  const ctx = {pkg, topics, groups, globals: uniqueGlobalFlags(commands), pages: [...groups.keys()].map(pageName)}
  const files = new Map([['docs/commands.md', markdown({commands, pkg, topics})]])
  files.set(`man/${BIN}.1`, mainPage(ctx))
  for (const [topic, cmds] of groups) files.set(`man/${pageName(topic)}.1`, topicPage(topic, cmds, ctx))
  return files
}

function fail(message) {
  console.error(`gen-docs: ${message}`)
  process.exit(1)
}

const dirFlag = process.argv.indexOf('--dir')
const OUT = dirFlag > 0 ? process.argv[dirFlag + 1] : ROOT
const files = generate()
if (process.argv.includes('--check')) {
  const stale = [...files].filter(([path, text]) => !existsSync(join(OUT, path)) || readFileSync(join(OUT, path), 'utf8') !== text).map(([p]) => p)
  const manDir = join(OUT, 'man')
  const extra = existsSync(manDir)
    ? readdirSync(manDir)
        .filter((f) => f.endsWith('.1') && !files.has(`man/${f}`))
        .map((f) => `man/${f}`)
    : []
  if (stale.length || extra.length)
    fail(
      `the command reference is stale (${[...stale, ...extra.map((f) => `${f} (no such command topic)`)].join(', ')}): ` +
        'a command, flag or description changed. Run `npm run docs` and commit docs/commands.md and man/',
    )
  console.log(`gen-docs: docs/commands.md and ${files.size - 1} man pages are current`)
} else {
  mkdirSync(join(OUT, 'man'), {recursive: true})
  mkdirSync(join(OUT, 'docs'), {recursive: true})
  const manDir = join(OUT, 'man')
  // man/ holds generated pages only: a topic that is gone takes its page with it
  for (const f of readdirSync(manDir)) if (f.endsWith('.1') && !files.has(`man/${f}`)) unlinkSync(join(manDir, f))
  for (const [path, text] of files) writeFileSync(join(OUT, path), text)
  console.log(`gen-docs: wrote docs/commands.md and ${files.size - 1} man pages`)
}
