// The official MCP TypeScript SDK client against a running sluice-mcpd,
// over HTTPS with bearer API keys. Environment (set by mcpd_interop.sh):
//   MCPD_URL      https://127.0.0.1:<port>/mcp
//   KEY_ALL       a key with scopes read,query
//   KEY_READ      a key with scope read only
//   NODE_EXTRA_CA_CERTS  mcpd's self-signed certificate
// mcpd runs with stream_hold_seconds = 2 and stream_retry_ms = 200: every
// GET stream is ended after 2 s and resumed by the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Stores (or replaces) a saved query through the admin API: the tenant's
// resources change.
async function putSavedQuery(name) {
  const res = await fetch(new URL(`/api/saved-queries/${name}`, url), {
    method: 'PUT',
    headers: { Authorization: `Bearer ${process.env.KEY_ALL}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ sql: 'SELECT count(*) AS n FROM customers', description: `changed ${Date.now()}` }),
  });
  assert.equal(res.status, 200, await res.text());
}

test('the GET stream tells the SDK client of resource changes, across the server ending it', async () => {
  const { client } = await connect(process.env.KEY_ALL);
  const changes = [];
  client.setNotificationHandler(ResourceListChangedNotificationSchema, () => changes.push(Date.now()));
  try {
    assert.equal(client.getServerCapabilities().resources.listChanged, true);
    // The SDK opens its GET stream on its own after initialize; until it
    // is there, a change has nobody to tell.
    for (let i = 0; i < 40 && changes.length === 0; i++) {
      await putSavedQuery('interop_changes');
      await sleep(150);
    }
    assert.ok(changes.length >= 1, 'a notifications/resources/list_changed');
    // Past the 2 s hold the response ended; the SDK came back with
    // Last-Event-ID after the 200 ms retry, and the next change reaches it.
    await sleep(2600);
    const before = changes.length;
    await putSavedQuery('interop_changes');
    for (let i = 0; i < 50 && changes.length === before; i++) await sleep(100);
    assert.equal(changes.length, before + 1);
    const resources = await client.listResources();
    assert.ok(resources.resources.some((r) => r.uri.endsWith('interop_changes')));
  } finally {
    await client.close();
  }
});

// The events of an SSE response as they arrive: {id, data, retry}.
function sseEvents(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  return {
    async next(ms = 5000) {
      const deadline = Date.now() + ms;
      while (true) {
        const end = buffer.indexOf('\n\n');
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.startsWith(':')) continue;  // keep-alive comment
          const event = {};
          for (const line of block.split('\n')) {
            const colon = line.indexOf(':');
            event[line.slice(0, colon)] = line.slice(colon + 1).replace(/^ /, '');
          }
          return event;
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('no event in time');
        const { value, done } = await Promise.race([
          reader.read(),
          sleep(left).then(() => ({ timeout: true })),
        ]);
        if (done) return null;
        if (value) buffer += value;
      }
    },
    cancel: () => reader.cancel(),
  };
}

test('a GET stream resumes at Last-Event-ID with what it missed, for its own session and key only', async () => {
  const headers = (key, extra = {}) => ({
    Authorization: `Bearer ${key}`, 'MCP-Protocol-Version': '2025-11-25', ...extra,
  });
  const init = await fetch(url, {
    method: 'POST',
    headers: headers(process.env.KEY_ALL, { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' }),
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
  });
  assert.equal(init.status, 200);
  const sid = init.headers.get('mcp-session-id');
  await init.text();
  const get = (key, extra = {}) =>
    fetch(url, { headers: headers(key, { Accept: 'text/event-stream', 'Mcp-Session-Id': sid, ...extra }) });

  // Fresh: a priming event (an id, the retry field, no data).
  const first = await get(process.env.KEY_ALL);
  assert.equal(first.status, 200);
  assert.match(first.headers.get('content-type'), /^text\/event-stream/);
  assert.equal(first.headers.get('x-accel-buffering'), 'no');
  const events = sseEvents(first);
  const priming = await events.next();
  assert.match(priming.id, /^[0-9a-f]{16}-[0-9]+$/);
  assert.equal(priming.retry, '200');
  assert.equal(priming.data, '');
  // The response ends cleanly (a last chunk, no reset) after the 2 s hold.
  const t0 = Date.now();
  assert.equal(await events.next(4000), null);
  assert.ok(Date.now() - t0 > 1000);
  // A change happens while nobody listens.
  await putSavedQuery('interop_resume');

  // Nobody else resumes it: another key, a malformed or foreign id.
  const status = async (res) => {
    await res.text();
    return res.status;
  };
  assert.equal(await status(await get(process.env.KEY_READ, { 'Last-Event-ID': priming.id })), 404);
  assert.equal(await status(await get(process.env.KEY_ALL, { 'Last-Event-ID': 'x'.repeat(20) })), 400);
  // The session is fine, the stream is not: 409 (a 404 would tell the
  // client its session is gone).
  assert.equal(await status(await get(process.env.KEY_ALL, { 'Last-Event-ID': '0123456789abcdef-1' })), 409);
  assert.equal(await status(await get(process.env.KEY_ALL, { Accept: 'application/json' })), 406);

  const resumed = await get(process.env.KEY_ALL, { 'Last-Event-ID': priming.id });
  assert.equal(resumed.status, 200);
  const more = sseEvents(resumed);
  const missed = await more.next();
  assert.equal(JSON.parse(missed.data).method, 'notifications/resources/list_changed');
  assert.ok(missed.id > priming.id || missed.id.length > priming.id.length);

  // Ending the session ends its stream.
  const del = await fetch(url, { method: 'DELETE', headers: headers(process.env.KEY_ALL, { 'Mcp-Session-Id': sid }) });
  assert.equal(del.status, 200);
  assert.equal(await more.next(), null);
});

test('revoking a key ends its sessions and their open streams at once', async () => {
  const admin = { Authorization: `Bearer ${process.env.KEY_ALL}`, 'Content-Type': 'application/json' };
  const made = await fetch(new URL('/api/keys', url), {
    method: 'POST', headers: admin, body: JSON.stringify({ name: 'soon-revoked', scopes: 'read,admin' }),
  });
  assert.equal(made.status, 201);
  const { id, token } = await made.json();
  const init = await fetch(url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
  });
  const sid = init.headers.get('mcp-session-id');
  await init.text();
  const stream = await fetch(url, { headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream', 'Mcp-Session-Id': sid } });
  assert.equal(stream.status, 200);
  const events = sseEvents(stream);
  assert.ok((await events.next()).id);
  // Whoever holds the key mints another with it (a thief keeping access).
  const minted = await fetch(new URL('/api/keys', url), {
    method: 'POST', headers: { ...admin, Authorization: `Bearer ${token}` }, body: JSON.stringify({ name: 'spare', scopes: 'read' }),
  });
  assert.equal(minted.status, 201);
  const spare = await minted.json();
  const meta = (key) => fetch(new URL('/api/meta', url), { headers: { Authorization: `Bearer ${key}` } });
  assert.equal((await meta(spare.token)).status, 200);
  const t0 = Date.now();
  const revoked = await fetch(new URL(`/api/keys/${id}`, url), { method: 'DELETE', headers: admin });
  assert.equal(revoked.status, 200);
  assert.deepEqual(await revoked.json(), { revoked: true, also_revoked: [spare.id] });
  // Ended well before the 2 s hold would have ended it.
  assert.equal(await events.next(1500), null);
  assert.ok(Date.now() - t0 < 1500);
  // The key minted with it died with it.
  assert.equal((await meta(spare.token)).status, 401);
});

test('JSON nested 400 000 deep is refused on /mcp and the admin API, and the server lives on', async () => {
  // nlohmann copies and dumps recursively: unbounded, one such body would
  // overflow a thread's stack and kill the daemon.
  const deep = '['.repeat(400000) + ']'.repeat(400000);
  const auth = { Authorization: `Bearer ${process.env.KEY_ALL}`, 'Content-Type': 'application/json' };
  const mcp = await fetch(url, {
    method: 'POST',
    headers: { ...auth, Accept: 'application/json, text/event-stream' },
    body: `{"jsonrpc":"2.0","id":1,"method":${deep}}`,
  });
  assert.equal(mcp.status, 400);
  assert.equal((await mcp.json()).error.code, -32700);
  const keys = await fetch(new URL('/api/keys', url), { method: 'POST', headers: auth, body: `{"name":${deep}}` });
  assert.equal(keys.status, 400);
  assert.match(await keys.text(), /nested deeper than 64 levels/);
  const { client } = await connect(process.env.KEY_ALL);
  assert.ok((await client.listTools()).tools.length > 0);
  await client.close();
});

test('a query built to make SQLite hold gigabytes fails closed; the server lives on', async () => {
  // 1100 columns of one MiB each: 1.1 GB inside SQLite (the byte cap
  // bounds only what mcpd copies), past what one statement may add to
  // SQLite's heap (64 MiB), long before mcpd's 1 GiB limit for all of it.
  const { client } = await connect(process.env.KEY_ALL);
  const cols = Array(1100).fill('s').join(',');
  const sql = `WITH a(s) AS (SELECT printf('%.*c', 1000000, 'x')) SELECT ${cols} FROM a`;
  const r = await client.callTool({ name: 'run_query', arguments: { sql } });
  assert.equal(r.isError, true);
  assert.match(r.content[0].text, /too much memory/);
  const ok = await client.callTool({ name: 'run_query', arguments: { sql: 'SELECT count(*) AS n FROM customers' } });
  assert.equal(ok.isError, false);
  await client.close();
});
