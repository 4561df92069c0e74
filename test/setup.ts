// Runs in every test file (vitest.config.ts setupFiles): whatever happened in the file, the
// temporary directories the helpers made go with it.
import {afterAll} from 'vitest'
import {removeTempDirs} from './helpers/cleanup.js'

afterAll(removeTempDirs)
