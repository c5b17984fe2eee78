// @ts-check
// Turns a V8 .cpuprofile (node --cpu-prof) into folded stacks and a flamegraph SVG. Used by
// bench/profile.mjs for every thread, because 0x draws only the main isolate's samples and
// pullchat does no request work there.

/** @typedef {{ id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }} Node */

/** @param {{ nodes: Node[], samples: number[], timeDeltas: number[] }} profile */
export function foldedStacks(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  /** @type {Map<number, number>} */
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  /** @type {Map<number, number>} */
  const weight = new Map()
  profile.samples.forEach((id, i) => weight.set(id, (weight.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
  /** @type {Map<string, number>} */
  const folded = new Map()
  for (const [id, us] of weight) {
    const names = []
    for (let cur = /** @type {number | undefined} */ (id); cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)?.callFrame
      if (!f) break
      const file = f.url.split('/').slice(-2).join('/')
      names.push(`${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`)
    }
    const key = names.reverse().join(';')
    folded.set(key, (folded.get(key) ?? 0) + us)
  }
  return folded
}

/** @param {Map<string, number>} folded @param {string} title */
export function flamegraphSvg(folded, title) {
  /** @typedef {{ name: string, value: number, children: Map<string, Frame> }} Frame */
  /** @type {Frame} */
  const root = { name: 'all', value: 0, children: new Map() }
  for (const [stack, us] of folded) {
    root.value += us
    let node = root
    for (const name of stack.split(';')) {
      let child = node.children.get(name)
      if (!child) node.children.set(name, (child = { name, value: 0, children: new Map() }))
      child.value += us
      node = child
    }
  }
  const W = 1200
  const H = 16
  /** @type {string[]} */
  const rects = []
  let depthMax = 0
  const esc = (/** @type {string} */ s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;')
  /** @param {Frame} node @param {number} x @param {number} depth */
  const draw = (node, x, depth) => {
    const w = (node.value / root.value) * W
    if (w < 0.5) return
    depthMax = Math.max(depthMax, depth)
    const hue = node.name.includes('(idle)') ? 'hsl(0,0%,80%)' : / (http|rpc|store|wal|metrics)\/|dist\/(cluster|config|log|errors)/.test(node.name) ? 'hsl(210,60%,60%)' : 'hsl(30,80%,60%)'
    const pct = ((node.value / root.value) * 100).toFixed(1)
    rects.push(
      `<g><title>${esc(node.name)} (${pct}%)</title><rect x="${x.toFixed(1)}" y="{Y${depth}}" width="${w.toFixed(1)}" height="${H - 1}" fill="${hue}"/>` +
        (w > 40 ? `<text x="${(x + 3).toFixed(1)}" y="{T${depth}}" font-size="11">${esc(node.name.slice(0, Math.floor(w / 6.5)))}</text>` : '') +
        '</g>',
    )
    let cx = x
    for (const c of [...node.children.values()].sort((a, b) => b.value - a.value)) {
      draw(c, cx, depth + 1)
      cx += (c.value / root.value) * W
    }
  }
  draw(root, 0, 0)
  const height = (depthMax + 1) * H + 30
  // Root at the bottom, callees above.
  const body = rects.join('\n').replace(/\{([YT])(\d+)\}/g, (_, k, d) => String(height - (Number(d) + 1) * H + (k === 'T' ? 11 : 0)))
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height + 20}" font-family="monospace"><rect width="100%" height="100%" fill="white"/><text x="4" y="14" font-size="13">${esc(title)}</text>\n${body}\n</svg>\n`
}
