// The Postman collection examples/postman/pullchat.postman_collection.json, run for real by newman
// (Postman's own runtime) against the real server: every request runs and every pm.test passes.

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import t from 'tap'
import { startServer } from '../helpers/server.js'

// newman ships no type declarations: the little of its Node API used here.
interface Assertion {
  readonly assertion: string
  readonly error?: { readonly message: string }
}
interface Execution {
  readonly item: { readonly name: string }
  readonly request: { readonly method: string }
  readonly response: { readonly code: number; stream: Buffer }
  readonly assertions?: readonly Assertion[]
}
interface Stat {
  readonly total: number
  readonly failed: number
}
interface Summary {
  readonly run: {
    readonly stats: { readonly requests: Stat; readonly assertions: Stat; readonly testScripts: Stat; readonly prerequestScripts: Stat }
    readonly executions: readonly Execution[]
    readonly failures: readonly { readonly error: { readonly message: string }; readonly source?: { readonly name?: string } }[]
  }
}
interface RequestEvent {
  readonly item: { readonly name: string }
  readonly request: { readonly body?: { readonly raw?: string } }
  /** What went on the wire, as postman-runtime recorded it. */
  readonly history?: { readonly execution?: { readonly data?: readonly { readonly request: { readonly method: string; readonly headers: readonly { key: string; value: string }[] } }[] } }
}
interface Newman {
  run(
    options: { collection: unknown; envVar: { key: string; value: string }[] },
    cb: (err: Error | null, summary: Summary) => void,
  ): { on(event: 'request', listener: (err: Error | null, args: RequestEvent) => void): void }
}
const newman = createRequire(import.meta.url)('newman') as Newman

interface CollectionItem {
  name: string
  protocolProfileBehavior?: { disableBodyPruning?: boolean }
  event?: { listen: string; script: { exec: string[] } }[]
  request: { method: string }
}
interface Collection {
  item: CollectionItem[]
}

const collection = JSON.parse(readFileSync(new URL('../../examples/postman/pullchat.postman_collection.json', import.meta.url), 'utf8')) as Collection

interface Sent {
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | undefined
}

/** Runs a collection; also returns each request as it went on the wire, by item name. */
const run = (c: Collection, baseUrl: string): Promise<{ summary: Summary; sent: Map<string, Sent> }> =>
  new Promise((resolve, reject) => {
    const sent = new Map<string, Sent>()
    const emitter = newman.run({ collection: c, envVar: [{ key: 'baseUrl', value: baseUrl }] }, (err, summary) => (err ? reject(err) : resolve({ summary, sent })))
    emitter.on('request', (_err, args) => {
      const wire = args.history?.execution?.data?.at(-1)?.request
      if (wire === undefined) return
      sent.set(args.item.name, { method: wire.method, headers: Object.fromEntries(wire.headers.map((h) => [h.key, h.value])), body: args.request.body?.raw })
    })
  })

// pm.test('name', ...) calls in the collection's test scripts.
const declaredTests = (c: Collection): string[] =>
  c.item.flatMap((i) => (i.event ?? []).filter((e) => e.listen === 'test').flatMap((e) => [...e.script.exec.join('\n').matchAll(/pm\.test\('([^']+)'/g)].map((m) => m[1] as string)))

t.test('newman runs the collection green', async (t) => {
  const { base } = await startServer(t)
  const { summary, sent } = await run(collection, base)
  const { stats, executions, failures } = summary.run
  t.same(
    failures.map((f) => `${f.source?.name}: ${f.error.message}`),
    [],
    'no failures',
  )
  t.same(
    executions.map((e) => e.item.name),
    collection.item.map((i) => i.name),
    'every request ran, in order',
  )
  t.same(stats.requests, { total: collection.item.length, pending: 0, failed: 0 })
  const declared = declaredTests(collection)
  t.equal(declared.length, 22, 'the collection declares 22 pm.test checks')
  t.same(
    executions.flatMap((e) => (e.assertions ?? []).map((a) => a.assertion)),
    declared,
    'every pm.test ran',
  )
  t.same(stats.assertions, { total: declared.length, pending: 0, failed: 0 })
  t.same(stats.testScripts, { total: collection.item.length, pending: 0, failed: 0 })

  // What Postman put on the wire: GET requests with their JSON body, Content-Type and its own
  // headers (User-Agent PostmanRuntime, Postman-Token, Cache-Control...).
  const byName = new Map(executions.map((e) => [e.item.name, e]))
  for (const name of ['Pull (GET with JSON body)', 'Pull reverse (GET with JSON body)']) {
    const wire = sent.get(name) as Sent
    t.equal(wire.method, 'GET', name)
    t.match(wire.body, /^\{\n {2}"chat": "[^"]+",\n {2}"cursor": 0,/, `${name}: a JSON body`)
    t.match(
      wire.headers,
      { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(wire.body ?? '')), 'User-Agent': /^PostmanRuntime\//, 'Postman-Token': /./ },
      `${name}: headers`,
    )
    t.equal((byName.get(name) as Execution).response.code, 200, name)
  }
  const page = JSON.parse((byName.get('Pull reverse (GET with JSON body)') as Execution).response.stream.toString('utf8'))
  t.same(
    page.messages.map((m: { text: string }) => m.text),
    ['hi alice', 'hello bob'],
  )
})

t.test('the GET body matters: with body pruning on, Postman drops it and the pulls fail', async (t) => {
  const { base } = await startServer(t)
  const pruned = structuredClone(collection)
  for (const item of pruned.item) delete item.protocolProfileBehavior
  const { summary, sent } = await run(pruned, base)
  const pull = summary.run.executions.find((e) => e.item.name === 'Pull (GET with JSON body)') as Execution
  t.notOk('Content-Length' in (sent.get('Pull (GET with JSON body)') as Sent).headers, 'no body went on the wire')
  t.equal(pull.response.code, 400)
  t.same(JSON.parse(pull.response.stream.toString('utf8')), {
    statusCode: 400,
    code: 'IM_ERR_MISSING_FIELD',
    error: 'Bad Request',
    message: '"chat" is required and must not be empty',
  })
  t.ok(summary.run.stats.assertions.failed >= 2, 'the collection reports the failures')
})
