// Reads a JMeter test plan (.jmx) and plays it against a server the way JMeter 5's HttpClient 4
// sampler does, evaluating the plan's own variables, extractors and Response Assertions. Only the
// elements and functions examples/jmeter/pullchat.jmx uses are supported; anything else throws,
// so a plan edited beyond them fails loudly instead of being replayed wrongly.
//
// Wire format (captured from a real JMeter run: Debian's jmeter 2.13 with HttpClient 4.5.14, and
// the same for JMeter 5): "Connection: keep-alive", the Header Manager's headers, Content-Length
// when there is a body, Host, and "User-Agent: Apache-HttpClient/4.5.14 (Java/17.0.15)". JMeter
// sends a raw body with GET since 3.1 (bug 60358); 2.13 silently drops it.

import { RawConnection } from './raw-http.js'

export interface XmlNode {
  readonly name: string
  readonly attrs: Readonly<Record<string, string>>
  readonly children: XmlNode[]
  text: string
}

const ENTITIES: Record<string, string> = { quot: '"', amp: '&', lt: '<', gt: '>', apos: "'" }
const decode = (s: string): string =>
  s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16))
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10))
    const v = ENTITIES[e]
    if (v === undefined) throw new Error(`unknown XML entity ${m}`)
    return v
  })

/** A small XML parser: elements, attributes, text, comments and the declaration. */
export function parseXml(src: string): XmlNode {
  const root: XmlNode = { name: '#document', attrs: {}, children: [], text: '' }
  const stack: XmlNode[] = [root]
  const token = /<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<\/([\w.:-]+)\s*>|<([\w.:-]+)((?:\s+[\w.:-]+\s*=\s*"[^"]*")*)\s*(\/?)>|([^<]+)/g
  let m: RegExpExecArray | null
  let at = 0
  while ((m = token.exec(src)) !== null) {
    if (m.index !== at) throw new Error(`XML: unexpected ${JSON.stringify(src.slice(at, at + 20))}`)
    at = token.lastIndex
    const top = stack[stack.length - 1] as XmlNode
    if (m[1] !== undefined) {
      if (top.name !== m[1]) throw new Error(`XML: </${m[1]}> closes <${top.name}>`)
      stack.pop()
    } else if (m[2] !== undefined) {
      const attrs: Record<string, string> = {}
      for (const a of (m[3] ?? '').matchAll(/([\w.:-]+)\s*=\s*"([^"]*)"/g)) attrs[a[1] as string] = decode(a[2] as string)
      const node: XmlNode = { name: m[2], attrs, children: [], text: '' }
      top.children.push(node)
      if (m[4] !== '/') stack.push(node)
    } else if (m[5] !== undefined) {
      top.text += decode(m[5])
    }
  }
  if (at !== src.length || stack.length !== 1) throw new Error('XML: unbalanced document')
  return root
}

const kids = (n: XmlNode): XmlNode[] => n.children
function prop(n: XmlNode, name: string): XmlNode | undefined {
  return n.children.find((c) => c.attrs.name === name)
}
function str(n: XmlNode, name: string, fallback?: string): string {
  const p = prop(n, name)
  if (p === undefined) {
    if (fallback !== undefined) return fallback
    throw new Error(`${n.name} "${n.attrs.testname}" has no ${name}`)
  }
  return p.text
}

export interface Assertion {
  readonly name: string
  readonly field: 'code' | 'body'
  readonly type: number
  readonly patterns: readonly string[]
}

export interface Extractor {
  readonly name: string
  readonly refName: string
  readonly regex: string
  readonly group: number
  readonly fallback: string
}

export interface Sampler {
  readonly name: string
  readonly method: string
  readonly path: string
  /** The raw body template (postBodyRaw), or null for named parameters. */
  readonly rawBody: string | null
  readonly params: readonly { name: string; value: string; encode: boolean }[]
  readonly extractors: readonly Extractor[]
  readonly assertions: readonly Assertion[]
}

export interface Plan {
  readonly variables: readonly [string, string][]
  readonly headers: readonly [string, string][]
  readonly threads: string
  readonly loops: string
  readonly samplers: readonly Sampler[]
}

// Elements of a hashTree come in pairs: the element, then the hashTree of its children.
function pairs(tree: XmlNode): [XmlNode, XmlNode][] {
  const out: [XmlNode, XmlNode][] = []
  const c = kids(tree)
  for (let i = 0; i < c.length; i += 2) {
    const el = c[i] as XmlNode
    const sub = c[i + 1]
    if (sub === undefined || sub.name !== 'hashTree') throw new Error(`${el.name} is not followed by its hashTree`)
    out.push([el, sub])
  }
  return out
}

function argumentsOf(n: XmlNode): XmlNode[] {
  const args = prop(n, 'HTTPsampler.Arguments') ?? prop(n, 'TestPlan.user_defined_variables')
  const coll = args === undefined ? undefined : prop(args, 'Arguments.arguments')
  return coll === undefined ? [] : kids(coll)
}

function readSampler(el: XmlNode, tree: XmlNode): Sampler {
  const name = el.attrs.testname ?? ''
  const raw = str(el, 'HTTPSampler.postBodyRaw', 'false') === 'true'
  const args = argumentsOf(el)
  const extractors: Extractor[] = []
  const assertions: Assertion[] = []
  for (const [child] of pairs(tree)) {
    if (child.attrs.enabled === 'false') continue
    if (child.name === 'ResponseAssertion') {
      const field = str(child, 'Assertion.test_field')
      if (field !== 'Assertion.response_code' && field !== 'Assertion.response_data') throw new Error(`unsupported assertion field ${field}`)
      const strings = prop(child, 'Asserion.test_strings') // sic: JMeter's own spelling
      const patterns = strings === undefined ? [] : kids(strings).map((s) => s.text)
      // An assertion without a pattern would hold for any response: a plan that has one is wrong.
      if (patterns.length === 0) throw new Error(`assertion ${JSON.stringify(child.attrs.testname ?? '')} has no pattern to test`)
      assertions.push({
        name: child.attrs.testname ?? '',
        field: field === 'Assertion.response_code' ? 'code' : 'body',
        type: Number(str(child, 'Assertion.test_type')),
        patterns,
      })
    } else if (child.name === 'RegexExtractor') {
      const template = str(child, 'RegexExtractor.template')
      const group = /^\$(\d+)\$$/.exec(template)
      if (group === null || str(child, 'RegexExtractor.match_number') !== '1' || str(child, 'RegexExtractor.useHeaders', 'false') !== 'false') {
        throw new Error(`unsupported RegexExtractor settings in "${child.attrs.testname}"`)
      }
      extractors.push({
        name: child.attrs.testname ?? '',
        refName: str(child, 'RegexExtractor.refname'),
        regex: str(child, 'RegexExtractor.regex'),
        group: Number(group[1]),
        fallback: str(child, 'RegexExtractor.default', ''),
      })
    } else throw new Error(`unsupported element ${child.name} under "${name}"`)
  }
  return {
    name,
    method: str(el, 'HTTPSampler.method'),
    path: str(el, 'HTTPSampler.path'),
    rawBody: raw ? (args.length === 1 ? str(args[0] as XmlNode, 'Argument.value') : '') : null,
    params: raw
      ? []
      : args.map((a) => ({ name: str(a, 'Argument.name'), value: str(a, 'Argument.value'), encode: str(a, 'HTTPArgument.always_encode', 'false') === 'true' })),
    extractors,
    assertions,
  }
}

export function readPlan(xml: string): Plan {
  const doc = parseXml(xml)
  const root = kids(doc).find((n) => n.name === 'jmeterTestPlan')
  if (root === undefined) throw new Error('not a JMeter test plan')
  const [[testPlan, planTree]] = pairs(kids(root)[0] as XmlNode) as [[XmlNode, XmlNode]]
  const variables = argumentsOf(testPlan).map((a) => [str(a, 'Argument.name'), str(a, 'Argument.value')] as [string, string])
  const groups = pairs(planTree).filter(([el]) => el.name === 'ThreadGroup' && el.attrs.enabled !== 'false')
  if (groups.length !== 1) throw new Error(`expected one thread group, found ${groups.length}`)
  const [group, groupTree] = groups[0] as [XmlNode, XmlNode]
  const loopController = prop(group, 'ThreadGroup.main_controller') as XmlNode
  const headers: [string, string][] = []
  const samplers: Sampler[] = []
  for (const [el, tree] of pairs(groupTree)) {
    if (el.attrs.enabled === 'false') continue
    if (el.name === 'HeaderManager') {
      for (const h of kids(prop(el, 'HeaderManager.headers') as XmlNode)) headers.push([str(h, 'Header.name'), str(h, 'Header.value')])
    } else if (el.name === 'HTTPSamplerProxy') samplers.push(readSampler(el, tree))
    else if (el.name !== 'ResultCollector') throw new Error(`unsupported element ${el.name} in the thread group`)
  }
  return { variables, headers, threads: str(group, 'ThreadGroup.num_threads'), loops: str(loopController, 'LoopController.loops'), samplers }
}

interface ThreadContext {
  readonly threadNum: number
  readonly vars: Map<string, string>
  readonly counters: Map<string, number>
}

/** Evaluates ${var} references and the functions the plan uses, as JMeter does. */
export function evaluate(template: string, ctx: ThreadContext, props: Readonly<Record<string, string>>): string {
  return template.replace(/\$\{([^}]*)\}/g, (whole, inner: string) => {
    const fn = /^(__\w+)(?:\((.*)\))?$/.exec(inner)
    if (fn === null) return ctx.vars.get(inner) ?? whole // JMeter leaves unknown variables as they are
    const args = fn[2] === undefined ? [] : fn[2].split(',')
    switch (fn[1]) {
      case '__P':
        return props[args[0] ?? ''] ?? args[1] ?? ''
      case '__time':
        if (args.some((a) => a !== '')) throw new Error('only ${__time(,)} is supported')
        return String(Date.now())
      case '__threadNum':
        return String(ctx.threadNum)
      case '__counter': {
        if (args[0] !== 'TRUE') throw new Error('only per-thread ${__counter(TRUE,var)} is supported')
        const n = (ctx.counters.get(inner) ?? 0) + 1
        ctx.counters.set(inner, n)
        if (args[1]) ctx.vars.set(args[1], String(n))
        return String(n)
      }
      default:
        throw new Error(`unsupported JMeter function ${fn[1]}`)
    }
  })
}

const MATCH = 1
const CONTAINS = 2
const NOT = 4
const EQUALS = 8
const SUBSTRING = 16

function check(a: Assertion, value: string, pattern: string): boolean {
  let ok: boolean
  if (a.type & EQUALS) ok = value === pattern
  else if (a.type & SUBSTRING) ok = value.includes(pattern)
  else if (a.type & MATCH) ok = new RegExp(`^(?:${pattern})$`).test(value)
  else if (a.type & CONTAINS) ok = new RegExp(pattern).test(value)
  else throw new Error(`unsupported assertion type ${a.type}`)
  return a.type & NOT ? !ok : ok
}

export const JMETER_USER_AGENT = 'Apache-HttpClient/4.5.14 (Java/17.0.15)'

export interface SampleResult {
  readonly thread: number
  readonly loop: number
  readonly sampler: string
  /** The request exactly as written on the wire. */
  readonly request: string
  readonly status: number
  readonly body: string
  readonly assertions: readonly { name: string; ok: boolean; detail: string }[]
}

/** Runs the plan: `threads` threads at once, each on its own keep-alive connection. */
export async function runPlan(plan: Plan, props: Readonly<Record<string, string>>): Promise<SampleResult[]> {
  const shared: ThreadContext = { threadNum: 0, vars: new Map(), counters: new Map() }
  for (const [name, value] of plan.variables) shared.vars.set(name, evaluate(value, shared, props))
  const threads = Number(evaluate(plan.threads, shared, props))
  const loops = Number(evaluate(plan.loops, shared, props))
  const host = shared.vars.get('host') as string
  const port = Number(shared.vars.get('port'))
  const results: SampleResult[] = []
  await Promise.all(
    Array.from({ length: threads }, async (_, i) => {
      const ctx: ThreadContext = { threadNum: i + 1, vars: new Map(shared.vars), counters: new Map() }
      const conn = await RawConnection.open(port, host)
      try {
        for (let loop = 1; loop <= loops; loop++) {
          for (const s of plan.samplers) {
            let path = evaluate(s.path, ctx, props)
            let body = ''
            if (s.rawBody !== null) body = evaluate(s.rawBody, ctx, props)
            else if (s.params.length > 0) {
              if (s.method !== 'GET') throw new Error('named parameters are only supported on GET')
              const query = s.params.map((p) => {
                const v = evaluate(p.value, ctx, props)
                return `${p.name}=${p.encode ? encodeURIComponent(v) : v}`
              })
              path += `?${query.join('&')}`
            }
            const bytes = Buffer.from(body, 'utf8')
            const head = [`${s.method} ${path} HTTP/1.1`, 'Connection: keep-alive']
            for (const [k, v] of plan.headers) head.push(`${k}: ${evaluate(v, ctx, props)}`)
            if (bytes.length > 0) head.push(`Content-Length: ${bytes.length}`)
            head.push(`Host: ${host}:${port}`, `User-Agent: ${JMETER_USER_AGENT}`)
            const res = await conn.send(head, bytes)
            for (const x of s.extractors) {
              const m = new RegExp(evaluate(x.regex, ctx, props)).exec(res.body)
              ctx.vars.set(x.refName, m?.[x.group] ?? x.fallback)
            }
            const assertions = s.assertions.map((a) => {
              const value = a.field === 'code' ? String(res.status) : res.body
              const patterns = a.patterns.map((p) => evaluate(p, ctx, props))
              const ok = patterns.every((p) => check(a, value, p))
              return { name: a.name, ok, detail: ok ? '' : `${JSON.stringify(value)} against ${JSON.stringify(patterns)}` }
            })
            results.push({
              thread: ctx.threadNum,
              loop,
              sampler: s.name,
              request: head.join('\r\n') + '\r\n\r\n' + body,
              status: res.status,
              body: res.body,
              assertions,
            })
          }
        }
      } finally {
        conn.close()
      }
    }),
  )
  return results
}
