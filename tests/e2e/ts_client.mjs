// The official TypeScript SDK client (what Claude Desktop and VS Code are
// built on) calling tools through one session, printing what the caller sees
// for each call as one JSON line:
//   node ts_client.mjs SDK_DIR URL TOOL [TOOL ...]     (TOOL: NAME or NAME=JSON arguments)
// {"tool":..., "outcome":"result"|"error", "class":..., "code":..., "message":..., "text":...}
// then {"session":"closed"} once the session is ended cleanly.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [sdkDir, url, ...tools] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(join(sdkDir, 'dist/esm', p)).href);
const { Client } = await load('client/index.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');

const transport = new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: 'mcpx-denial-probe', version: '1.0.0' });
await client.connect(transport);
for (const spec of tools) {
    const eq = spec.indexOf('=');
    const tool = eq < 0 ? spec : spec.slice(0, eq);
    const args = eq < 0 ? {} : JSON.parse(spec.slice(eq + 1));
    try {
        const r = await client.callTool({ name: tool, arguments: args });
        console.log(JSON.stringify({ tool, outcome: 'result', isError: !!r.isError, text: r.content?.[0]?.text }));
    } catch (e) {
        console.log(JSON.stringify({ tool, outcome: 'error', class: e.constructor.name, code: e.code, message: e.message }));
    }
}
await client.close();
console.log(JSON.stringify({ session: 'closed' }));
