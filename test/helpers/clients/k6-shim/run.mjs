// Runs a k6 script under the shim: node run.mjs <script> <baseUrl> <vus> <iterations>.
// Each virtual user gets its own instance of the script module (k6 gives each VU its own init
// context); iterations run round-robin over the VUs. Prints one JSON summary line on stdout.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { state } from './state.mjs'

const [scriptPath, baseUrl, vusArg, iterationsArg] = process.argv.slice(2)
const vus = Number(vusArg)
const iterations = Number(iterationsArg)

const source = readFileSync(resolve(scriptPath), 'utf8')
const shim = (name) => new URL(name, import.meta.url).href
let rewritten = source
for (const [from, to] of [
  [/from\s+(['"])k6\/http\1/g, `from '${shim('http.mjs')}'`],
  [/from\s+(['"])k6\1/g, `from '${shim('k6.mjs')}'`],
]) {
  if (!from.test(rewritten)) throw new Error(`${scriptPath} does not import ${from}`)
  rewritten = rewritten.replace(from, to)
}
const dir = mkdtempSync(join(tmpdir(), 'k6-shim-'))
const file = join(dir, 'script.mjs')
writeFileSync(file, rewritten)

globalThis.__ENV = { BASE_URL: baseUrl }
const modules = []
try {
  for (let vu = 1; vu <= vus; vu++) {
    globalThis.__VU = vu
    globalThis.__ITER = 0
    state.vu = vu
    modules.push(await import(`${pathToFileURL(file).href}?vu=${vu}`))
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}

for (let iter = 0; iter < iterations; iter++) {
  for (let vu = 1; vu <= vus; vu++) {
    globalThis.__VU = vu
    globalThis.__ITER = iter
    state.vu = vu
    try {
      modules[vu - 1].default()
    } catch (err) {
      state.errors.push(`vu ${vu} iteration ${iter}: ${err?.stack ?? err}`)
    }
  }
}

process.stdout.write(
  JSON.stringify({
    options: modules[0].options,
    checks: Object.fromEntries(state.checks),
    requests: state.requests,
    errors: state.errors,
  }) + '\n',
)
process.exit(0)
