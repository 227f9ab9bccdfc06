#!/usr/bin/env node
// A do-nothing OTLP/HTTP receiver for measuring the cost of span export:
// answers 200 to every POST /v1/traces (reading the whole body, as a real
// collector would) and counts requests, bytes and spans. `GET /stats` returns
// the counts as JSON (also printed to stderr on SIGINT/SIGTERM). Prints `{"listening": "http://127.0.0.1:PORT"}` on stdout.
//
//   node scripts/otlp-sink.mjs [--port 4318] [--host 127.0.0.1] [--names] [--dump FILE]
//
// Spans are counted by scanning for `"spanId"` keys, not by parsing: the sink
// shares the machine with the server it measures. `--names` parses every
// body to count spans per name (for diagnosis; it costs CPU); `--dump FILE`
// writes the first body received to FILE, to see what a span carries.
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 node apps/allidbd …
import { writeFileSync } from "node:fs"
import { createServer } from "node:http"

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback
}

const withNames = process.argv.includes("--names")
let dumpTo = arg("dump", undefined)
// `names`: spans received per span name (with --names), to see what a request exports.
const stats = { requests: 0, bytes: 0, spans: 0, unparsable: 0, names: {} }

const spanIdKey = Buffer.from('"spanId"')
const countSpanIds = (body) => {
  let spans = 0
  for (let i = body.indexOf(spanIdKey); i >= 0; i = body.indexOf(spanIdKey, i + spanIdKey.length)) spans++
  return spans
}

const countNames = (body) => {
  for (const r of body.resourceSpans ?? []) {
    for (const s of r.scopeSpans ?? []) {
      for (const span of s.spans ?? []) stats.names[span.name] = (stats.names[span.name] ?? 0) + 1
    }
  }
}

const server = createServer((req, res) => {
  const chunks = []
  req.on("data", (c) => chunks.push(c))
  req.on("end", () => {
    if (req.method === "GET" && req.url === "/stats") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(stats))
      return
    }
    if (req.method === "POST" && req.url === "/v1/traces") {
      const body = Buffer.concat(chunks)
      stats.requests++
      stats.bytes += body.length
      if (dumpTo !== undefined) {
        writeFileSync(dumpTo, body)
        dumpTo = undefined
      }
      // JSON is what the exporter sends; protobuf bodies are counted in bytes only.
      if (String(req.headers["content-type"]).startsWith("application/json")) {
        stats.spans += countSpanIds(body)
        if (withNames) {
          try {
            countNames(JSON.parse(body.toString("utf8")))
          } catch {
            stats.unparsable++
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
      return
    }
    res.writeHead(404).end()
  })
})

server.listen(Number(arg("port", "4318")), arg("host", "127.0.0.1"), () => {
  const { address, port } = server.address()
  process.stdout.write(`${JSON.stringify({ listening: `http://${address}:${port}` })}\n`)
})

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    process.stderr.write(`otlp-sink: ${JSON.stringify(stats)}\n`)
    server.close(() => process.exit(0))
  })
}
