// Once per test run (vitest.config.ts globalSetup): names the run's throwaway attacker user
// (test/helpers/mallory.ts), which test files create on first use, and removes it when the run
// ends, failed tests included. The name is this run's own, so runs side by side on one host
// never remove each other's user.
import {execFileSync} from 'node:child_process'
import type {TestProject} from 'vitest/node'

declare module 'vitest' {
  export interface ProvidedContext {
    mallory: string
  }
}

export default function setup(project: TestProject): () => void {
  const name = `tfactl-mallory-${process.pid}`
  project.provide('mallory', name)
  return () => {
    try {
      execFileSync('id', ['-u', name], {stdio: 'ignore'})
    } catch {
      return // never created: no test needed it
    }
    // --force: even while a process of it is still ending; its group goes with it
    execFileSync('userdel', ['--force', name], {stdio: 'ignore'})
    try {
      execFileSync('groupdel', [name], {stdio: 'ignore'})
    } catch {
      // userdel removed the user's own group already
    }
  }
}
