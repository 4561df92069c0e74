// Writes oclif.manifest.json (what `oclif manifest` does): command metadata oclif reads at
// start-up instead of importing every command file, which makes `--help` fast.
//
// Descriptions are written in the source wrapped at ~100 columns; oclif's help wraps them again
// to the terminal and keeps the source's line breaks, which cut sentences in the middle. Here a
// paragraph becomes one line (blank lines and "- " list items stay), so help wraps it once.
import {Plugin} from '@oclif/core'
import {writeFileSync} from 'node:fs'

/** One line per paragraph or list item. */
const unwrap = (text) =>
  text
    .split(/\n\s*\n/)
    .map((paragraph) => {
      const lines = []
      for (const line of paragraph.split('\n').map((l) => l.trim()))
        if (line.startsWith('- ') || lines.length === 0) lines.push(line)
        else lines[lines.length - 1] += ` ${line}`
      return lines.join('\n')
    })
    .join('\n\n')

const plugin = new Plugin({root: process.cwd(), type: 'core', ignoreManifest: true, errorOnManifestCreate: true})
await plugin.load()
for (const command of Object.values(plugin.manifest.commands)) {
  if (command.description) command.description = unwrap(command.description)
  for (const part of [command.flags, command.args])
    for (const item of Object.values(part ?? {})) if (item.description) item.description = unwrap(item.description)
}
writeFileSync('oclif.manifest.json', JSON.stringify(plugin.manifest))
console.log(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).length} commands`)
