// The official MCP TypeScript SDK client against a running sluice-mcpd,
// over HTTPS with bearer API keys. Environment (set by mcpd_interop.sh):
//   MCPD_URL      https://127.0.0.1:<port>/mcp
//   KEY_ALL       a key with scopes read,query
//   KEY_READ      a key with scope read only
//   NODE_EXTRA_CA_CERTS  mcpd's self-signed certificate
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const url = new URL(process.env.MCPD_URL);

async function connect(key) {
  const client = new Client({ name: 'sluice-interop', version: '1.0.0' });
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers } });
  await client.connect(transport);
  return { client, transport };
}

test('initialize, list and call over HTTPS with a bearer key', async () => {
  const { client } = await connect(process.env.KEY_ALL);
  try {
    assert.equal(client.getServerVersion().name, 'sluice-mcpd');
    const tools = (await client.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(tools, ['describe_entity', 'list_entities', 'list_saved_queries', 'run_query', 'run_saved_query']);

    const entities = await client.callTool({ name: 'list_entities', arguments: {} });
    assert.equal(entities.isError, false);
    const names = entities.structuredContent.entities.map((e) => e.name);
    for (const t of ['accounts', 'cards', 'customers', 'transactions']) assert.ok(names.includes(t), t);

    const q = await client.callTool({
      name: 'run_query',
      arguments: { sql: 'SELECT id, kind FROM accounts WHERE customer_id = ? ORDER BY id', params: [1] },
    });
    assert.equal(q.isError, false);
    assert.deepEqual(q.structuredContent.columns, ['id', 'kind']);
    assert.ok(q.structuredContent.rows.length >= 1);

    const denied = await client.callTool({ name: 'run_query', arguments: { sql: 'DROP TABLE customers' } });
    assert.equal(denied.isError, true);

    const stats = await client.callTool({ name: 'describe_entity', arguments: { entity: 'customers' } });
    assert.ok(stats.structuredContent.row_count > 0);

    const resources = await client.listResources();
    assert.ok(resources.resources.some((r) => r.uri === 'sluice://entities/customers'));
    const prompts = await client.listPrompts();
    assert.ok(prompts.prompts.some((p) => p.name === 'explore_entity'));
    await client.ping();
  } finally {
    await client.close();
  }
});

test('no key: 401 with WWW-Authenticate, and the SDK refuses to connect', async () => {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
  });
  assert.equal(res.status, 401);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
  await assert.rejects(connect(undefined));
  await assert.rejects(connect('slk_0000000000000000_' + 'A'.repeat(43)));
});

test('a read-only key sees only read tools and is refused run_query', async () => {
  const { client } = await connect(process.env.KEY_READ);
  try {
    const tools = (await client.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(tools, ['describe_entity', 'list_entities', 'list_saved_queries']);
    await assert.rejects(
      client.callTool({ name: 'run_query', arguments: { sql: 'SELECT 1' } }),
      (e) => e.code === -32602,
    );
  } finally {
    await client.close();
  }
});

test('a session is bound to the key that created it', async () => {
  const { client, transport } = await connect(process.env.KEY_ALL);
  try {
    const sid = transport.sessionId;
    assert.ok(sid && sid.length >= 32);
    const ping = (key) =>
      fetch(url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
          Authorization: `Bearer ${key}`, 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-11-25',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'ping' }),
      });
    assert.equal((await ping(process.env.KEY_ALL)).status, 200);
    assert.equal((await ping(process.env.KEY_READ)).status, 404);
  } finally {
    await client.close();
  }
});

test('cancellation: an aborted call stops its query at once, and the audit log says so', async () => {
  const { client } = await connect(process.env.KEY_ALL);
  try {
    // A cross join that runs until the query timeout (20 s here) unless stopped.
    const slow = 'SELECT count(*) FROM transactions a, transactions b, transactions c';
    const controller = new AbortController();
    const started = Date.now();
    const call = client.callTool({ name: 'run_query', arguments: { sql: slow } }, undefined, { signal: controller.signal });
    setTimeout(() => controller.abort('enough'), 300);
    await assert.rejects(call);  // the SDK sends notifications/cancelled and gives up waiting
    // The server stopped the query: the record appears long before the timeout.
    let record;
    for (let i = 0; i < 100 && !record; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const res = await fetch(new URL('/api/audit?kind=tool_call&limit=5', url), {
        headers: { Authorization: `Bearer ${process.env.KEY_ALL}` },
      });
      record = (await res.json()).records.find((r) => r.status === 'cancelled');
    }
    assert.ok(record, 'a cancelled tool_call record');
    assert.equal(record.tool, 'run_query');
    assert.ok(record.latency_us < 10_000_000, `latency ${record.latency_us} us`);
    assert.ok(Date.now() - started < 10_000);
    // The session goes on.
    const q = await client.callTool({ name: 'run_query', arguments: { sql: 'SELECT 1 AS one' } });
    assert.equal(q.isError, false);
  } finally {
    await client.close();
  }
});
