#!/usr/bin/env node
// Development entry point: the oclif CLI alone (no login:check fast path), from a fresh `npm run build`.
import('@oclif/core').then(({execute}) => execute({development: true, dir: require('node:path').join(__dirname, '..')}))
