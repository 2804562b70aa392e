// The official TypeScript SDK client (npm @modelcontextprotocol/sdk, installed
// into tests/.conformance by scripts/conformance.sh) against one URL: the
// operations test_sdk_interop.py checks, printed as one JSON object.
//
//   node ts_sdk_client.mjs URL CONFORMANCE_DIR
//
// A failed operation is recorded, not thrown: {error: {class, code, message}},
// so the test sees exactly what an application using the SDK would see.
import { createRequire } from "node:module";
import path from "node:path";

const [url, dir] = process.argv.slice(2);
const require = createRequire(path.join(dir, "package.json"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");

const client = new Client({ name: "mcpx-ts-interop", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url));
const out = {};

async function step(name, fn) {
  try {
    out[name] = { result: await fn() };
  } catch (e) {
    out[name] = { error: { class: e?.constructor?.name, code: e?.code, message: String(e?.message ?? e) } };
  }
}

await client.connect(transport);
out.version = transport.protocolVersion ?? null;
out.session = transport.sessionId != null;
await step("tools", async () => (await client.listTools()).tools.map((t) => t.name).sort());
await step("echo", async () => (await client.callTool({ name: "echo", arguments: { text: "héllo" } })).content[0].text);
await step("denied", async () => await client.callTool({ name: "secret_delete", arguments: { path: "/" } }));
await step("rule", async () => await client.callTool({ name: "weather", arguments: { region: "mars" } }));
// The same client, the same session, after the denials.
await step("echo_after", async () => (await client.callTool({ name: "echo", arguments: { text: "again" } })).content[0].text);
await step("resources", async () => (await client.listResources()).resources.map((r) => r.uri).sort());
await step("read", async () => (await client.readResource({ uri: "test://static-text" })).contents[0].text);
await step("prompts", async () => (await client.listPrompts()).prompts.map((p) => p.name).sort());
await step("prompt", async () => (await client.getPrompt({ name: "test_simple_prompt" })).messages[0].content.text);
await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
