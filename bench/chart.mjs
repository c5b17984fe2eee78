// @ts-check
// Draws a bench report as an SVG: per scenario, throughput and p99 latency, pullchat beside the
// ceiling measured in the same run. No dependencies: the chart is a few rectangles.

/** @param {string} s */
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')

/**
 * @param {{ mode: string, date: string, machine: { cores: number, model?: string }, settings: any,
 *   results: { scenario: string, ratio: number, ceiling: { reqPerSec: number, latencyMsP99: number },
 *   pullchat: { reqPerSec: number, latencyMsP99: number } }[] }} report
 */
export function renderChart(report) {
  const rows = report.results
  const W = 900
  const rowH = 44
  const top = 70
  const H = top + rows.length * rowH + 60
  const left = 150
  const half = (W - left - 40) / 2
  const maxRps = Math.max(1, ...rows.flatMap((r) => [r.ceiling.reqPerSec, r.pullchat.reqPerSec]))
  const maxP99 = Math.max(0.1, ...rows.flatMap((r) => [r.ceiling.latencyMsP99, r.pullchat.latencyMsP99]))
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">pullchat vs the bare-uWS ceiling, same run (${esc(report.mode)}, ${esc(report.date.slice(0, 16))}Z)</text>`,
    `<text x="10" y="38" fill="#555">${report.machine.cores} cores, ${esc(report.machine.model ?? '')}; ${report.settings.connections} connections, generator ${esc(report.settings.generator)}</text>`,
    `<text x="${left}" y="60" font-weight="bold">throughput, req/s (ratio to ceiling)</text>`,
    `<text x="${left + half + 20}" y="60" font-weight="bold">p99 latency, ms</text>`,
  ]
  rows.forEach((r, i) => {
    const y = top + i * rowH
    out.push(`<text x="10" y="${y + 20}">${esc(r.scenario)}</text>`)
    const bar = (/** @type {number} */ x, /** @type {number} */ yy, /** @type {number} */ w, /** @type {string} */ color, /** @type {string} */ label) =>
      `<rect x="${x}" y="${yy}" width="${Math.max(1, w).toFixed(1)}" height="14" fill="${color}"/><text x="${x + Math.max(1, w) + 4}" y="${yy + 11}" fill="#333">${esc(label)}</text>`
    const wC = ((half - 90) * r.ceiling.reqPerSec) / maxRps
    const wP = ((half - 90) * r.pullchat.reqPerSec) / maxRps
    out.push(bar(left, y + 2, wC, '#bbb', `${r.ceiling.reqPerSec}`))
    out.push(bar(left, y + 18, wP, '#2a7ab9', `${r.pullchat.reqPerSec} (${r.ratio})`))
    const x2 = left + half + 20
    out.push(bar(x2, y + 2, ((half - 60) * r.ceiling.latencyMsP99) / maxP99, '#bbb', `${r.ceiling.latencyMsP99}`))
    out.push(bar(x2, y + 18, ((half - 60) * r.pullchat.latencyMsP99) / maxP99, '#2a7ab9', `${r.pullchat.latencyMsP99}`))
  })
  const ly = H - 30
  out.push(`<rect x="${left}" y="${ly}" width="14" height="10" fill="#bbb"/><text x="${left + 20}" y="${ly + 9}">ceiling (bare uWS, fixed replies)</text>`)
  out.push(`<rect x="${left + 260}" y="${ly}" width="14" height="10" fill="#2a7ab9"/><text x="${left + 280}" y="${ly + 9}">pullchat (default settings, durable sends)</text>`)
  out.push('</svg>')
  return out.join('\n') + '\n'
}
