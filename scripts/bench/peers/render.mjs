// Vega-Lite spec → SVG string, headless. Lives in the peers package so that
// `vega` / `vega-lite` (ESM-only) resolve from scripts/bench/peers/node_modules.
import * as vega from "vega"
import * as vegaLite from "vega-lite"

export const toSvg = async (spec) => {
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: "none" })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

/** SVG → PNG with resvg (prebuilt binary shipped in the npm package). */
export const toPng = async (svg, width = 1100) => {
  const { Resvg } = await import("@resvg/resvg-js")
  return new Resvg(svg, { fitTo: { mode: "width", value: width }, font: { loadSystemFonts: true } }).render().asPng()
}
