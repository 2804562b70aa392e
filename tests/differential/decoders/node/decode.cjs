// Node decoders, run from the packages scripts/diffenv.sh installs.
//
//   node decode.cjs NODE_MODULES_DIR requests   < cases.jsonl > views.jsonl
//   node decode.cjs NODE_MODULES_DIR responses  < cases.jsonl > views.jsonl
//   node decode.cjs NODE_MODULES_DIR clients    < cases.jsonl > views.jsonl
//
// requests: every case's exact bytes and headers are POSTed to two real HTTP
// servers in this process:
//   node-express-json  an Express app with express.json() (body-parser: honours
//                      the Content-Type charset through iconv-lite, e.g. utf-7)
//   ts-sdk-server      the official TypeScript SDK server as its docs build it:
//                      createMcpExpressApp() + StreamableHTTPServerTransport
//                      (stateless, JSON answers) + a low-level Server; the
//                      view is what the SDK hands to its dispatcher.
// responses: the bytes the gateway delivered on each stream are parsed the way
// the official TypeScript SDK client does (fetch's Response.json(), or
// TextDecoderStream + eventsource-parser, then JSONRPCMessageSchema), and a
// result is matched to the pending tools/list request as Protocol does:
// Number(response.id) === Number(request id).
// clients: the real Client + StreamableHTTPClientTransport read the same
// bytes replayed by tests/differential/replay.py (ts-sdk-client-real).
'use strict';

const http = require('node:http');
const path = require('node:path');
const readline = require('node:readline');
const { createRequire } = require('node:module');

const req = createRequire(path.join(path.resolve(process.argv[2]), 'package.json'));
const express = req('express');
const { createMcpExpressApp } = req('@modelcontextprotocol/sdk/server/express.js');
const { StreamableHTTPServerTransport } = req('@modelcontextprotocol/sdk/server/streamableHttp.js');
const { Server } = req('@modelcontextprotocol/sdk/server/index.js');
const types = req('@modelcontextprotocol/sdk/types.js');
const { EventSourceParserStream } = req('eventsource-parser/stream');

// Headers that belong to the hop, not to the message.
const HOP = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'te', 'upgrade']);

function view(msg) {
  const v = { kind: 'response', id: null, method: null, tool: null, text: null, kind_arg: null };
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return { ...v, kind: 'invalid' };
  if ('id' in msg) v.id = JSON.stringify(msg.id);
  if ('method' in msg) {
    v.method = msg.method;
    v.kind = msg.id !== undefined && msg.id !== null ? 'request' : 'notification';
  }
  if (msg.method === 'tools/call' && msg.params && typeof msg.params === 'object') {
    v.tool = msg.params.name ?? null;
    const a = msg.params.arguments;
    if (a && typeof a === 'object') {
      v.text = a.text ?? null;
      v.kind_arg = a.kind ?? null;
    }
  }
  return v;
}

function listen(app) {
  return new Promise((resolve) => {
    const srv = http.createServer(app).listen(0, '127.0.0.1', () => resolve(srv));
  });
}

function post(port, headers, body) {
  return new Promise((resolve) => {
    const h = {};
    for (const [k, val] of Object.entries(headers)) if (!HOP.has(k)) h[k] = val;
    h['content-length'] = String(body.length);
    const r = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/mcp', headers: h, timeout: 10000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', (e) => resolve({ status: 0, body: String(e) }));
    r.end(body);
  });
}

async function requests(lines) {
  // What the Express handler reads from req.body, per case.
  const seen = new Map();
  const plain = express();
  plain.use(express.json());
  plain.post('/mcp', (rq, rs) => {
    seen.set(rq.get('x-diff-case'), rq.body);
    rs.status(rq.body === undefined ? 415 : 200).json({});
  });
  plain.use((err, rq, rs, next) => { // body-parser errors: unsupported charset, bad JSON
    seen.set(rq.get('x-diff-case'), { __error: `${err.status || ''} ${err.type || ''} ${err.message}` });
    rs.status(err.status || 400).json({});
  });

  // The SDK's messages, as its transport hands them to the protocol layer.
  const sdkSeen = new Map();
  const sdk = createMcpExpressApp({ host: '127.0.0.1' });
  sdk.post('/mcp', async (rq, rs) => {
    const id = rq.get('x-diff-case');
    const got = [];
    sdkSeen.set(id, got);
    const server = new Server({ name: 'diff', version: '1.0.0' }, { capabilities: { tools: {} } });
    server.setRequestHandler(types.ListToolsRequestSchema, async () => ({ tools: [] }));
    server.setRequestHandler(types.CallToolRequestSchema, async () => ({ content: [] }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    await server.connect(transport);
    const dispatch = transport.onmessage;
    transport.onmessage = (m, extra) => { got.push(m); dispatch?.(m, extra); };
    try {
      await transport.handleRequest(rq, rs, rq.body);
    } finally {
      await server.close();
    }
  });
  const a = await listen(plain);
  const b = await listen(sdk);
  for (const c of lines) {
    const body = Buffer.from(c.body_hex, 'hex');
    const headers = { ...c.headers, 'x-diff-case': c.case };
    await post(a.address().port, headers, body);
    const parsed = seen.get(c.case);
    let o = { case: c.case, decoder: 'node-express-json', status: 'ok', messages: [] };
    if (parsed === undefined) o = { ...o, status: 'rejected', error: 'express.json() did not parse the body (type mismatch)' };
    else if (parsed && parsed.__error) o = { ...o, status: 'rejected', error: parsed.__error };
    else o.messages = (Array.isArray(parsed) ? parsed : [parsed]).map(view);
    out(o);

    const r = await post(b.address().port, headers, body);
    const msgs = sdkSeen.get(c.case) || [];
    const ok = msgs.length > 0 && r.status < 400;
    out({ case: c.case, decoder: 'ts-sdk-server', status: ok ? 'ok' : 'rejected',
          error: ok ? undefined : `HTTP ${r.status} ${r.body.slice(0, 200)}`, messages: ok ? msgs.map(view) : [] });
  }
  a.close();
  b.close();
}

// --- client side -----------------------------------------------------------

async function streamMessages(s) {
  const bytes = Buffer.from(s.body_hex, 'hex');
  const essence = (s.content_type || '').split(';')[0].trim().toLowerCase();
  if (s.status < 200 || s.status >= 300 || s.status === 202) return [];
  if (essence === 'application/json') {
    const data = await new Response(bytes).json();
    return (Array.isArray(data) ? data : [data]).map((m) => types.JSONRPCMessageSchema.parse(m));
  }
  if (essence !== 'text/event-stream') return [];
  const msgs = [];
  const reader = new Response(bytes).body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream())
    .getReader();
  for (;;) {
    const { value: ev, done } = await reader.read();
    if (done) break;
    if (!ev.data) continue;
    if (!ev.event || ev.event === 'message') {
      try { msgs.push(types.JSONRPCMessageSchema.parse(JSON.parse(ev.data))); } catch { /* onerror; stream goes on */ }
    }
  }
  return msgs;
}

async function responses(lines) {
  for (const c of lines) {
    const lists = [];
    const errors = [];
    for (const s of c.streams) {
      let msgs = [];
      try { msgs = await streamMessages(s); } catch (e) { errors.push(`${s.label}: ${e.message}`); }
      for (const m of msgs) {
        if (!('result' in m) || Number(m.id) !== Number(c.request_id)) continue;
        const r = types.ListToolsResultSchema.safeParse(m.result);
        if (r.success) lists.push({ stream: s.label, id: JSON.stringify(m.id), tools: r.data.tools.map((t) => t.name) });
      }
    }
    out({ case: c.case, decoder: 'ts-sdk-client', status: 'ok', lists, errors });
  }
}

// The real client: Client + StreamableHTTPClientTransport against a replay of
// what the gateway delivered (tests/differential/replay.py).
async function realClients(lines) {
  const { Client } = req('@modelcontextprotocol/sdk/client/index.js');
  const { StreamableHTTPClientTransport } = req('@modelcontextprotocol/sdk/client/streamableHttp.js');
  const within = (p, ms) => Promise.race([p, new Promise((_, no) => setTimeout(() => no(new Error('no answer')), ms))]);
  // Cases are independent (one replay URL each), so several run at once:
  // a case whose answer never matches costs its timeout only once per batch.
  let next = 0;
  const worker = async () => {
    while (next < lines.length) await one(lines[next++]);
  };
  await Promise.all(Array.from({ length: 8 }, worker));

  async function one(c) {
    const client = new Client({ name: 'diff', version: '1.0.0' });
    client.onerror = () => {};
    const lists = [];
    const errors = [];
    try {
      await within(client.connect(new StreamableHTTPClientTransport(new URL(c.url))), 10000);
      const listing = client.listTools();
      listing.catch(() => {});
      if (c.placement === 'call-stream') {
        try { await within(client.callTool({ name: 'echo', arguments: { text: 'hello', kind: 'safe' } }), 3000); }
        catch (e) { errors.push(`callTool: ${e.message}`); }
      }
      const r = await within(listing, 3000);
      lists.push({ stream: 'Client.listTools()', id: '1', tools: r.tools.map((t) => t.name) });
    } catch (e) {
      errors.push(String(e.message).slice(0, 200));
    }
    await client.close().catch(() => {});
    out({ case: c.case, decoder: 'ts-sdk-client-real', status: 'ok', lists, errors });
  }
}

function out(o) {
  process.stdout.write(JSON.stringify(o) + '\n');
}

async function main() {
  const lines = [];
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) if (line.trim()) lines.push(JSON.parse(line));
  if (process.argv[3] === 'requests') await requests(lines);
  else if (process.argv[3] === 'responses') await responses(lines);
  else if (process.argv[3] === 'clients') await realClients(lines);
  else throw new Error('mode must be requests or responses');
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(2); });
