// Writes oclif.manifest.json (what `oclif manifest` does): command metadata oclif reads at
// start-up instead of importing every command file, which makes `--help` fast.
import {Plugin} from '@oclif/core'
import {writeFileSync} from 'node:fs'

const plugin = new Plugin({root: process.cwd(), type: 'core', ignoreManifest: true, errorOnManifestCreate: true})
await plugin.load()
writeFileSync('oclif.manifest.json', JSON.stringify(plugin.manifest))
console.log(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).length} commands`)
