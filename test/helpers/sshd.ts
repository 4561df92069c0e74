// Test helper: run a real OpenSSH sshd on 127.0.0.1 whose PAM stack is a file
// we control (bind-mounted over /etc/pam.d/sshd inside a private mount
// namespace, so the host's file is never touched), create throw-away Unix
// users, and log in with the ssh2 client answering keyboard-interactive
// prompts (system password, then pam_oath's one-time password).
//
// Requires root, /usr/sbin/sshd, pam_oath.so and unshare(1). See canRunSshd().
import {execFileSync, spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createConnection, createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {tempDir} from './cleanup.js'
import {Client, type AuthenticationType, type ConnectConfig} from 'ssh2'

export const SSHD_BIN = '/usr/sbin/sshd'
export const HOST_PAM_SSHD = '/etc/pam.d/sshd'
const PAM_OATH_CANDIDATES = [
  '/lib/x86_64-linux-gnu/security/pam_oath.so',
  '/usr/lib/x86_64-linux-gnu/security/pam_oath.so',
  '/lib/aarch64-linux-gnu/security/pam_oath.so',
  '/usr/lib/aarch64-linux-gnu/security/pam_oath.so',
  '/lib/security/pam_oath.so',
  '/usr/lib/security/pam_oath.so',
]

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v "$1"`, 'sh', cmd], {encoding: 'utf8'})
  return r.status === 0 ? r.stdout.trim() || null : null
}

export function findPamOath(): string | null {
  return PAM_OATH_CANDIDATES.find((p) => existsSync(p)) ?? null
}

/** null when an sshd+pam_oath end-to-end test can run here, else the reason why not. */
export function canRunSshd(): string | null {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'not running as root'
  if (!existsSync(SSHD_BIN)) return `no ${SSHD_BIN} (apt-get install openssh-server)`
  if (!findPamOath()) return 'no pam_oath.so (apt-get install libpam-oath)'
  if (!existsSync(HOST_PAM_SSHD)) return `no ${HOST_PAM_SSHD} to base the PAM stack on`
  for (const tool of ['unshare', 'mount', 'ssh-keygen', 'useradd', 'userdel', 'chpasswd']) {
    if (!which(tool)) return `no ${tool} in PATH`
  }
  // Can we actually create a mount namespace and bind-mount (needs CAP_SYS_ADMIN)?
  const probe = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind /etc/hostname /etc/hostname'], {
    encoding: 'utf8',
    timeout: 10_000,
  })
  if (probe.status !== 0) {
    return `cannot bind-mount in a private mount namespace: ${(probe.stderr || probe.error?.message || '').trim()}`
  }
  return null
}

// ---------------------------------------------------------------------------
// PAM stack
// ---------------------------------------------------------------------------

export interface PamOathOptions {
  /** Absolute path of the pam_oath usersfile. */
  usersfile: string
  /** pam_oath `window=` (TOTP: steps checked on each side of now). Omitted = pam_oath default (5). */
  window?: number
  /** PAM control field; default is the TrueNAS-like `[success=ok user_unknown=ignore default=die]`. */
  control?: string
  /** Extra pam_oath arguments, e.g. ['debug'] or ['digits=6']. */
  extraArgs?: string[]
  /** Base PAM file to insert into (default: the host's /etc/pam.d/sshd, read only). */
  baseFile?: string
}

export const DEFAULT_OATH_CONTROL = '[success=ok user_unknown=ignore default=die]'

/** The pam_oath `auth` line that buildSshdPamConfig() inserts. */
export function pamOathLine(opts: PamOathOptions): string {
  const args = [`usersfile=${opts.usersfile}`]
  if (opts.window !== undefined) args.push(`window=${opts.window}`)
  args.push(...(opts.extraArgs ?? []))
  return `auth ${opts.control ?? DEFAULT_OATH_CONTROL} pam_oath.so ${args.join(' ')}`
}

/**
 * Debian's stock /etc/pam.d/sshd (read from the host, never modified) with the
 * pam_oath line inserted right after `@include common-auth`.
 */
export function buildSshdPamConfig(opts: PamOathOptions): string {
  return insertPamLine(pamOathLine(opts), opts.baseFile)
}

/**
 * Debian's stock /etc/pam.d/sshd (read, never modified) with `line` (e.g. the one
 * `tfactl ssh:config` prints) inserted right after `@include common-auth`.
 */
export function insertPamLine(line: string, baseFile = HOST_PAM_SSHD): string {
  const lines = readFileSync(baseFile, 'utf8').split('\n')
  const idx = lines.findIndex((l) => /^\s*@include\s+common-auth\s*$/.test(l))
  if (idx < 0) throw new Error(`no "@include common-auth" line in ${baseFile}`)
  lines.splice(idx + 1, 0, line)
  return lines.join('\n')
}

// ---------------------------------------------------------------------------
// sshd
// ---------------------------------------------------------------------------

export interface SshdOptions {
  /** Full content of the PAM file to use as /etc/pam.d/sshd for this sshd. */
  pamConfig: string
  /** Directory for config, host key, pid file, PAM file (default: fresh mkdtemp, removed on stop). */
  workDir?: string
  /** sshd LogLevel (default VERBOSE; DEBUG1..DEBUG3 for more). */
  logLevel?: string
  /** Extra sshd_config lines appended at the end. */
  extraConfig?: string[]
  /** How long to wait for the listener (default 20 s). */
  startTimeoutMs?: number
  /** Extra environment for sshd (and so for PAM modules), e.g. LD_PRELOAD of a test shim. */
  env?: Record<string, string>
}

export interface SshdHandle {
  port: number
  /** The directory holding sshd_config, host key and the PAM file. */
  workDir: string
  pid: number
  /** Everything sshd wrote to stderr/stdout so far (sshd -e logs to stderr). */
  logs(): string
  /** SIGTERM the sshd process group (SIGKILL after 5 s), wait for exit, remove our temp dir. */
  stop(): Promise<void>
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => (port ? resolve(port) : reject(new Error('no port'))))
    })
  })
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({host: '127.0.0.1', port})
    const done = (ok: boolean) => {
      sock.destroy()
      resolve(ok)
    }
    sock.setTimeout(1000, () => done(false))
    sock.once('connect', () => done(true))
    sock.once('error', () => done(false))
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms)
    child.once('exit', () => {
      clearTimeout(t)
      resolve(true)
    })
  })
}

/** Signal the process group led by `pid` (a child we spawned detached). Never our own group. */
function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid || pid <= 1) return // -0 would be *our* process group
  try {
    process.kill(-pid, signal)
  } catch {
    /* group already gone */
  }
}

function sshdConfig(opts: {port: number; hostKey: string; pidFile: string; logLevel: string; extra: string[]}): string {
  return [
    `ListenAddress 127.0.0.1`,
    `Port ${opts.port}`,
    `HostKey ${opts.hostKey}`,
    `PidFile ${opts.pidFile}`,
    `UsePAM yes`,
    `KbdInteractiveAuthentication yes`,
    `PasswordAuthentication no`,
    `PubkeyAuthentication yes`,
    `AuthorizedKeysFile .ssh/authorized_keys`,
    `PermitRootLogin no`,
    `StrictModes yes`,
    `UseDNS no`,
    `PrintMotd no`,
    `PrintLastLog no`,
    `X11Forwarding no`,
    `AllowTcpForwarding no`,
    `AllowAgentForwarding no`,
    `LoginGraceTime 30`,
    `MaxAuthTries 10`,
    `MaxStartups 50`,
    `LogLevel ${opts.logLevel}`,
    ...opts.extra,
    '',
  ].join('\n')
}

/**
 * Start sshd -D on 127.0.0.1:<free port> inside `unshare -m --propagation private`,
 * with opts.pamConfig bind-mounted over /etc/pam.d/sshd (only in that namespace).
 */
export async function startSshd(opts: SshdOptions): Promise<SshdHandle> {
  const reason = canRunSshd()
  if (reason) throw new Error(`cannot run sshd: ${reason}`)

  const ownDir = opts.workDir === undefined
  const dir = opts.workDir ?? tempDir('tfactl-sshd-')
  mkdirSync(dir, {recursive: true, mode: 0o700})

  try {
    const hostKey = join(dir, 'ssh_host_ed25519_key')
    if (!existsSync(hostKey)) {
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tfactl-test-host', '-f', hostKey], {
        stdio: 'ignore',
      })
    }
    const pamFile = join(dir, 'pam.d-sshd')
    writeFileSync(pamFile, opts.pamConfig, {mode: 0o644})
    chmodSync(pamFile, 0o644)
    return await launch(dir, ownDir, hostKey, pamFile, opts)
  } catch (err) {
    if (ownDir) rmSync(dir, {recursive: true, force: true})
    throw err
  }
}

async function launch(dir: string, ownDir: boolean, hostKey: string, pamFile: string, opts: SshdOptions): Promise<SshdHandle> {
  const startTimeout = opts.startTimeoutMs ?? 20_000
  let lastError = ''
  // Retry a couple of times in case another process grabs the port between
  // freePort() and sshd's bind().
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    const configFile = join(dir, 'sshd_config')
    writeFileSync(
      configFile,
      sshdConfig({
        port,
        hostKey,
        pidFile: join(dir, 'sshd.pid'),
        logLevel: opts.logLevel ?? 'VERBOSE',
        extra: opts.extraConfig ?? [],
      }),
      {mode: 0o600},
    )
    // Privilege-separation dir: sshd (even `sshd -t`) refuses to run without it; it must be
    // root-owned and not group/world writable. Debian normally creates it via systemd's
    // RuntimeDirectory, which doesn't exist here.
    mkdirSync('/run/sshd', {recursive: true, mode: 0o755})
    chmodSync('/run/sshd', 0o755)
    // Validate the config first for a clear error message.
    const check = spawnSync(SSHD_BIN, ['-t', '-f', configFile], {encoding: 'utf8'})
    if (check.status !== 0) throw new Error(`sshd -t rejected the config: ${check.stderr}`)

    const script = 'mount --bind "$1" /etc/pam.d/sshd && ' + `exec ${SSHD_BIN} -D -e -f "$2"`
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', pamFile, configFile], {
      detached: true, // own process group, so stop() can signal sshd and its per-connection children
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {...process.env, ...opts.env},
    })
    let log = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (log += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d))
    let spawnError: Error | undefined
    child.on('error', (e) => (spawnError = e))

    const deadline = Date.now() + startTimeout
    let up = false
    while (Date.now() < deadline) {
      if (spawnError || child.exitCode !== null || child.signalCode !== null) break
      if (log.includes(`Server listening on 127.0.0.1 port ${port}`) && (await portAccepts(port))) {
        up = true
        break
      }
      await sleep(50)
    }
    if (up) {
      const pid = child.pid!
      let stopped = false
      return {
        port,
        workDir: dir,
        pid,
        logs: () => log,
        async stop() {
          if (stopped) return
          stopped = true
          killGroup(pid, 'SIGTERM')
          if (!(await waitExit(child, 5000))) {
            killGroup(pid, 'SIGKILL')
            await waitExit(child, 5000)
          }
          // Per-connection children are in the same process group; make sure they're gone too.
          killGroup(pid, 'SIGKILL')
          if (ownDir) rmSync(dir, {recursive: true, force: true})
        },
      }
    }
    // Failed: clean up this attempt.
    killGroup(child.pid, 'SIGKILL')
    await waitExit(child, 5000)
    lastError = spawnError ? spawnError.message : `sshd exited (code ${child.exitCode}, signal ${child.signalCode})\n${log}`
    if (!/Address already in use|Bind to port/.test(log)) break
  }
  throw new Error(`sshd did not start: ${lastError || 'timeout'}`)
}

// ---------------------------------------------------------------------------
// Users and keys
// ---------------------------------------------------------------------------

export interface TestUser {
  name: string
  uid: number
  gid: number
  home: string
}

export function userExists(name: string): boolean {
  return spawnSync('getent', ['passwd', name], {encoding: 'utf8'}).status === 0
}

export function getUser(name: string): TestUser {
  const r = spawnSync('getent', ['passwd', name], {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`no such user ${name}`)
  const f = r.stdout.trim().split(':')
  return {name, uid: Number(f[2]), gid: Number(f[3]), home: f[5]}
}

/** A random, valid, short user name (useradd limit is 32 chars). */
export function randomUserName(prefix = 'tfat'): string {
  return `${prefix}${Math.random().toString(36).slice(2, 8)}`
}

/** useradd -m (bash shell, own group) + chpasswd. Removes a stale user of that name first. */
export function createUser(name: string, password: string): TestUser {
  if (!/^[a-z_][a-z0-9_-]{0,30}$/.test(name)) throw new Error(`bad user name ${name}`)
  removeUser(name)
  execFileSync('useradd', ['-m', '-U', '-s', '/bin/bash', '-c', 'tfactl test user', name], {stdio: 'pipe'})
  execFileSync('chpasswd', [], {input: `${name}:${password}\n`, stdio: ['pipe', 'pipe', 'pipe']})
  return getUser(name)
}

/** userdel -r -f; a no-op when the user doesn't exist. Never throws. */
export function removeUser(name: string): void {
  if (!userExists(name)) return
  spawnSync('userdel', ['-r', '-f', name], {stdio: 'ignore'})
  if (userExists(name)) spawnSync('userdel', ['-f', name], {stdio: 'ignore'})
  // userdel -U removes the user's private group; be sure it is gone too.
  if (spawnSync('getent', ['group', name]).status === 0) spawnSync('groupdel', [name], {stdio: 'ignore'})
}

export interface KeyPair {
  /** OpenSSH-format private key (accepted by ssh2's privateKey). */
  privateKey: Buffer
  /** One-line `ssh-ed25519 AAAA... comment`. */
  publicKey: string
}

/** Generate an unencrypted ed25519 key pair with ssh-keygen (files are deleted afterwards). */
export function generateKeyPair(comment = 'tfactl-test'): KeyPair {
  const dir = mkdtempSync(join(tmpdir(), 'tfactl-key-'))
  try {
    const file = join(dir, 'id_ed25519')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], {stdio: 'ignore'})
    return {privateKey: readFileSync(file), publicKey: readFileSync(`${file}.pub`, 'utf8').trim()}
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

/** Append a public key to ~user/.ssh/authorized_keys with StrictModes-proof ownership/modes. */
export function installAuthorizedKey(user: string, publicKey: string): void {
  const u = getUser(user)
  const sshDir = join(u.home, '.ssh')
  mkdirSync(sshDir, {recursive: true, mode: 0o700})
  chmodSync(sshDir, 0o700)
  chownSync(sshDir, u.uid, u.gid)
  const file = join(sshDir, 'authorized_keys')
  const prev = existsSync(file) ? readFileSync(file, 'utf8') : ''
  writeFileSync(file, `${prev}${publicKey.trim()}\n`, {mode: 0o600})
  chmodSync(file, 0o600)
  chownSync(file, u.uid, u.gid)
}

// ---------------------------------------------------------------------------
// OATH helpers
// ---------------------------------------------------------------------------

/** TOTP code via oathtool (the reference implementation). `at` = Unix seconds (default now). */
export function oathtoolTotp(hexSecret: string, opts: {at?: number; digits?: number; step?: number} = {}): string {
  const args = ['--totp']
  if (opts.digits) args.push(`--digits=${opts.digits}`)
  if (opts.step) args.push(`--time-step-size=${opts.step}s`)
  if (opts.at !== undefined) args.push(`--now=@${Math.floor(opts.at)}`)
  args.push(hexSecret)
  return execFileSync('oathtool', args, {encoding: 'utf8'}).trim()
}

/** Write a pam_oath usersfile (root-owned, 0600). Lines are joined with \n, trailing newline added. */
export function writeUsersFile(path: string, lines: string[]): void {
  writeFileSync(path, lines.map((l) => `${l}\n`).join(''), {mode: 0o600})
  chmodSync(path, 0o600)
  chownSync(path, 0, 0)
}

// ---------------------------------------------------------------------------
// SSH client
// ---------------------------------------------------------------------------

export interface SshLoginOptions {
  port: number
  user: string
  /** Answer to prompts containing "assword" (and not matching the OTP patterns below). */
  password?: string
  /** Answer to prompts containing "OATH", "one-time", "code" or "verification" (checked first). */
  code?: string
  /** Try public-key auth first with this OpenSSH private key. */
  privateKey?: Buffer
  /** Run this command after 'ready' and report its exit code/stdout (opens a session). */
  command?: string
  timeoutMs?: number
}

export interface SshLoginResult {
  /** The connection reached 'ready' (and, if `command` was given, it ran). */
  ok: boolean
  /** Every keyboard-interactive prompt text, in order. */
  prompts: string[]
  /** Keyboard-interactive "instructions"/name texts that were not empty (PAM info/error messages). */
  messages: string[]
  /** Auth methods the client attempted, in order. */
  methods: AuthenticationType[]
  error?: string
  exitCode?: number | null
  stdout?: string
  durationMs: number
}

/** How a test logs a user in: with a code, a key, another password, or none (`password: null`). */
export interface UserLoginOptions {
  code?: string
  privateKey?: Buffer
  password?: string | null
}

/** A test user's login to the sshd on `port`: their own password unless told otherwise, then `id -un`. */
export const userLogin = (port: number, user: string, ownPassword: string | undefined, opts: UserLoginOptions = {}): Promise<SshLoginResult> =>
  sshLogin({
    port,
    user,
    password: opts.password === null ? undefined : (opts.password ?? ownPassword),
    code: opts.code,
    privateKey: opts.privateKey,
    command: 'id -un',
    timeoutMs: 30_000,
  })

export function sshLogin(opts: SshLoginOptions): Promise<SshLoginResult> {
  const started = Date.now()
  const prompts: string[] = []
  const messages: string[] = []
  const methods: AuthenticationType[] = []
  const timeoutMs = opts.timeoutMs ?? 20_000

  return new Promise((resolve) => {
    const conn = new Client()
    let settled = false
    let ready = false
    const finish = (r: Partial<SshLoginResult> & {ok: boolean}) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      try {
        conn.end()
      } catch {
        /* ignore */
      }
      // Don't leave a half-open socket behind.
      setTimeout(() => conn.destroy(), 200).unref()
      resolve({prompts, messages, methods, durationMs: Date.now() - started, ...r})
    }
    const timer = setTimeout(() => finish({ok: false, error: `timeout after ${timeoutMs} ms${ready ? ' (after ready)' : ''}`}), timeoutMs)

    const answer = (prompt: string): string => {
      // OTP first: pam_oath's prompt "One-time password (OATH) for `user': " also contains "password".
      if (/OATH|one-time|code|verification/i.test(prompt)) return opts.code ?? ''
      if (/assword/i.test(prompt)) return opts.password ?? ''
      return ''
    }

    const authMethods: AuthenticationType[] = []
    if (opts.privateKey) authMethods.push('publickey')
    authMethods.push('keyboard-interactive')
    let next = 0

    const config: ConnectConfig = {
      host: '127.0.0.1',
      port: opts.port,
      username: opts.user,
      tryKeyboard: true,
      readyTimeout: timeoutMs,
      privateKey: opts.privateKey,
      authHandler: (_methodsLeft, _partial, cb) => {
        // ssh2 accepts false ("no more methods"); @types/ssh2 omits it from NextAuthHandler.
        if (next >= authMethods.length) return (cb as unknown as (v: false) => void)(false)
        const type = authMethods[next++]
        methods.push(type)
        if (type === 'publickey') return cb({type, username: opts.user, key: opts.privateKey!})
        return cb({
          type: 'keyboard-interactive',
          username: opts.user,
          prompt: (name, instructions, _lang, kbPrompts, reply) => {
            if (name) messages.push(name)
            if (instructions) messages.push(instructions)
            for (const p of kbPrompts) prompts.push(p.prompt)
            reply(kbPrompts.map((p) => answer(p.prompt)))
          },
        })
      },
    }

    conn.on('ready', () => {
      ready = true
      if (!opts.command) return finish({ok: true})
      conn.exec(opts.command, (err, stream) => {
        if (err) return finish({ok: false, error: `exec failed: ${err.message}`})
        let stdout = ''
        let exitCode: number | null = null
        stream.on('data', (d: Buffer) => (stdout += d.toString('utf8')))
        stream.stderr.on('data', () => {})
        stream.on('exit', (code: number | null) => (exitCode = code))
        stream.on('close', () => finish({ok: true, exitCode, stdout}))
      })
    })
    conn.on('error', (err) => finish({ok: false, error: err.message}))
    conn.on('close', () => finish({ok: ready && !opts.command, error: ready ? undefined : 'connection closed before ready'}))
    conn.connect(config)
  })
}

// ---------------------------------------------------------------------------
// A pam_oath that can be paused (races made deterministic)
// ---------------------------------------------------------------------------

/**
 * C source of an LD_PRELOAD shim for sshd that pauses liboath at the two moments of its
 * users-file update (usersfile.c): just before it creates `<file>.lock` ("lock": it has read
 * and checked the file, unlocked) and just before it creates `<file>.new` ("new": it holds the
 * lock). Only when armed: creating `$TFACTL_SLOW_OATH_DIR/arm-<which>` makes the next such call
 * (one process: the arm file is unlinked atomically) create `at-<which>` and wait until
 * `go-<which>` exists (at most 20 s). liboath calls fopen(…, "wx") for both files.
 */
const SLOW_OATH_SHIM = String.raw`
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Read at load time: sshd's PAM child empties its environment (auth-pam.c) before pam_oath runs. */
static char dir[4096];
__attribute__((constructor)) static void init(void) {
  const char *d = getenv("TFACTL_SLOW_OATH_DIR");
  if (d) snprintf(dir, sizeof dir, "%s", d);
}

static void pause_at(const char *which) {
  char arm[4096], at[4096], go[4096];
  if (!dir[0]) return;
  snprintf(arm, sizeof arm, "%s/arm-%s", dir, which);
  if (unlink(arm) != 0) return;
  snprintf(at, sizeof at, "%s/at-%s", dir, which);
  snprintf(go, sizeof go, "%s/go-%s", dir, which);
  int fd = open(at, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd >= 0) close(fd);
  for (int i = 0; i < 2000 && access(go, F_OK) != 0; i++) usleep(10000);
  unlink(go);
}

FILE *fopen(const char *path, const char *mode) {
  static FILE *(*real)(const char *, const char *);
  if (!real) real = (FILE *(*)(const char *, const char *))dlsym(RTLD_NEXT, "fopen");
  if (path && mode && strcmp(mode, "wx") == 0) {
    if (ends_with(path, ".lock")) pause_at("lock");
    else if (ends_with(path, ".new")) pause_at("new");
  }
  return real(path, mode);
}
`

export interface SlowOath {
  /** The compiled shim, for LD_PRELOAD. */
  library: string
  /** The control directory, for TFACTL_SLOW_OATH_DIR. */
  dir: string
  /** sshd environment that loads the shim. */
  env: Record<string, string>
  /** Makes the next liboath update pause at `which`. */
  arm(which: 'lock' | 'new'): void
  /** Waits until a liboath process is paused at `which`. */
  reached(which: 'lock' | 'new', timeoutMs?: number): Promise<void>
  /** Lets the paused process go on. */
  release(which: 'lock' | 'new'): void
}

/** Compiles the shim into `dir` with the system C compiler; a string says why it cannot. */
export function buildSlowOath(dir: string): SlowOath | string {
  const compiler = ['cc', 'gcc', 'g++'].find((c) => which(c))
  if (!compiler) return 'no C compiler (cc, gcc or g++) to build the pam_oath pause shim'
  const source = join(dir, 'slow-oath.c')
  const library = join(dir, 'slow-oath.so')
  const control = join(dir, 'slow-oath')
  writeFileSync(source, SLOW_OATH_SHIM)
  mkdirSync(control, {recursive: true, mode: 0o700})
  const args = [...(compiler === 'g++' ? ['-x', 'c'] : []), '-shared', '-fPIC', '-O2', '-o', library, source, '-ldl']
  const r = spawnSync(compiler, args, {encoding: 'utf8'})
  if (r.status !== 0) return `${compiler} could not build the pause shim: ${r.stderr || r.error?.message}`
  const file = (name: string) => join(control, name)
  return {
    library,
    dir: control,
    env: {LD_PRELOAD: library, TFACTL_SLOW_OATH_DIR: control},
    arm(which) {
      rmSync(file(`at-${which}`), {force: true})
      rmSync(file(`go-${which}`), {force: true})
      writeFileSync(file(`arm-${which}`), '')
    },
    async reached(which, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs
      while (!existsSync(file(`at-${which}`))) {
        if (Date.now() > deadline) throw new Error(`no liboath process paused at "${which}" within ${timeoutMs} ms`)
        await sleep(20)
      }
    },
    release(which) {
      writeFileSync(file(`go-${which}`), '')
    },
  }
}
