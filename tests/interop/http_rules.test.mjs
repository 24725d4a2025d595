// sluice-mcpd's HTTP rules, from the outside: authentication, origin,
// limits, the admin API's role checks, rate limits and lockout. Runs
// against an instance with small limits (see mcpd_interop.sh):
// body 4096 B, headers 2048 B, origins [https://claude.ai], lockout after
// 3 failures for 2 s, 2 requests/s per tenant with a burst of 5.
// Tests run in order; rate limit and lockout come last.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';

const mcp = new URL(process.env.MCPD_URL);
const base = new URL('/', mcp);
const SUPER = process.env.KEY_SUPER;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Polls `check` for up to 2 s.
async function eventually(check) {
  for (let i = 0; i < 40; i++) {
    if (await check()) return true;
    await sleep(50);
  }
  return false;
}

const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'rules', version: '1' } } };

function post(body, headers = {}) {
  return fetch(mcp, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

function api(path, key, init = {}) {
  return fetch(new URL(path, base), {
    ...init,
    headers: { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...(init.body ? { 'Content-Type': 'application/json' } : {}), ...(init.headers ?? {}) },
  });
}

let viewerKey, viewerKeyId, adaKey;

// A new user of the tenant and a key for them, both made with `by`'s key.
async function userWithKey(name, role, scopes, by = SUPER) {
  const made = await api('/api/users', by, { method: 'POST', body: JSON.stringify({ name, role }) });
  assert.equal(made.status, 201);
  const id = (await made.json()).id;
  const key = await api('/api/keys', by, { method: 'POST', body: JSON.stringify({ name: `${name}-key`, scopes, user_id: id }) });
  assert.equal(key.status, 201);
  const k = await key.json();
  return { id, token: k.token, keyId: k.id };
}

test('healthz needs no key; metrics are served to loopback', async () => {
  assert.equal((await fetch(new URL('/healthz', base))).status, 200);
  const m = await fetch(new URL('/metrics', base));
  assert.equal(m.status, 200);
  assert.match(await m.text(), /^sluice_mcpd_auth_failures_total \d+$/m);
  assert.equal((await fetch(new URL('/nowhere', base))).status, 404);
});

test('/mcp without a key is 401 with WWW-Authenticate; a bad key says invalid_token', async () => {
  const none = await post(init);
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="sluice-mcpd"');
  const bad = await post(init, { Authorization: 'Bearer slk_0123456789abcdef_' + 'x'.repeat(43) });
  assert.equal(bad.status, 401);
  assert.match(bad.headers.get('www-authenticate'), /error="invalid_token"/);
  // Two failures so far: below the lockout threshold of 3. Let them age out.
  await sleep(2100);
});

test('hostile header bytes are answered, audited and survived', async () => {
  const r = await post(init, { Authorization: 'Bearer slk_bad', 'User-Agent': '\xff\xfe\xc3' });
  assert.equal(r.status, 401);
  assert.equal((await fetch(new URL('/healthz', base))).status, 200);
  await sleep(2100);  // let this failure age out of the lockout window
});

test('an Origin outside the allowed list is 403, an allowed one passes', async () => {
  assert.equal((await post(init, { Authorization: `Bearer ${SUPER}`, Origin: 'https://evil.example' })).status, 403);
  assert.equal((await post(init, { Authorization: `Bearer ${SUPER}`, Origin: 'http://localhost.evil.example' })).status, 403);
  assert.equal((await post(init, { Authorization: `Bearer ${SUPER}`, Origin: 'http://127.0.0.1:80x' })).status, 403);
  const ok = await post(init, { Authorization: `Bearer ${SUPER}`, Origin: 'https://claude.ai' });
  assert.equal(ok.status, 200);
  assert.ok(ok.headers.get('mcp-session-id'));
  // The machine's own loopback pages are its own.
  assert.equal((await post(init, { Authorization: `Bearer ${SUPER}`, Origin: 'http://localhost:6274' })).status, 200);
});

test('oversized bodies are 413, oversized headers 431', async () => {
  const big = JSON.stringify({ ...init, params: { ...init.params, pad: 'x'.repeat(5000) } });
  assert.equal((await post(big, { Authorization: `Bearer ${SUPER}` })).status, 413);
  assert.equal((await post(init, { Authorization: `Bearer ${SUPER}`, 'X-Pad': 'y'.repeat(3000) })).status, 431);
});

// Sends `head`, then `filler` over and over (up to 16 MiB) until the
// server closes the connection; resolves to the bytes written by then.
function flood(head, filler) {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: mcp.hostname, port: Number(mcp.port), rejectUnauthorized: false });
    let sent = 0;
    let done = false;
    const finish = () => { if (!done) { done = true; socket.destroy(); resolve(sent); } };
    socket.on('error', finish);
    socket.on('close', finish);
    socket.on('data', () => {});
    socket.once('secureConnect', () => {
      socket.write(head);
      const more = () => {
        while (!done && sent < (16 << 20)) {
          sent += filler.length;
          if (!socket.write(filler)) return socket.once('drain', more);
        }
        if (!done) socket.end();
      };
      more();
    });
  });
}

test('a chunked body\'s endless chunk-size line or trailers close the connection early', async () => {
  const head = `POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\nContent-Type: application/json\r\n` +
               'Transfer-Encoding: chunked\r\n\r\n';
  const filler = Buffer.alloc(16384, 'a');
  // Beast 1.81 bounds neither; unbounded, the server buffered all 16 MiB
  // (and more, until the request timeout).
  for (const start of ['1;', '0\r\nX-Trailer: ']) {
    const sent = await flood(head + start, filler);
    // (What the kernel buffers on both ends counts as sent: a few MiB.)
    assert.ok(sent < (8 << 20), `${JSON.stringify(start)}: ${sent} bytes sent before the server closed`);
  }
  assert.equal((await fetch(new URL('/healthz', base))).status, 200);
});

// Sends one raw request over TLS asking for keep-alive and leaves the
// socket open; resolves to what arrived once the server closed it.
function answerThenClose(request) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: mcp.hostname, port: Number(mcp.port), rejectUnauthorized: false }, () => {
      socket.write(request);
    });
    let got = '';
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`still open after the answer: ${got}`)); }, 5000);
    socket.on('data', (d) => { got += d; });
    socket.on('end', () => { clearTimeout(timer); resolve(got); });
    socket.on('error', reject);
  });
}

test('an answer to a request no key admitted closes the connection: no slot is held without one', async () => {
  const body = JSON.stringify(init);
  const post = (extra) => `POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\nContent-Type: application/json\r\n${extra}` +
                          `Accept: application/json, text/event-stream\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const get = (path) => `GET ${path} HTTP/1.1\r\nHost: ${mcp.host}\r\n\r\n`;
  for (const [request, status] of [
    [post(''), 401],
    [post('Origin: https://evil.example\r\n'), 403],
    [get('/healthz'), 200],
    [get('/nowhere'), 404],
  ]) {
    const text = await answerThenClose(request);
    assert.match(text, new RegExp(`^HTTP/1\\.1 ${status}`), request.split('\r\n')[0]);
    assert.match(text, /\r\nConnection: close\r\n/i);
  }
});

test('a request without a key is answered from its header: its body is never waited for', async () => {
  // A body announced and never sent: answered at once, not at the request timeout.
  const started = Date.now();
  const text = await answerThenClose(`POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\nContent-Type: application/json\r\n` +
                                     'Content-Length: 4000\r\n\r\n');
  assert.match(text, /^HTTP\/1\.1 401/);
  assert.ok(Date.now() - started < 4000, `answered after ${Date.now() - started} ms`);
});

test('a request without a key still sending its body gets the 401 and a clean close, chunked or not', async () => {
  // The client goes on sending its body after the answer has come, as a
  // client does that streams its body. A server that closed with the body
  // unread reset the connection under it (the reset can even overtake the
  // answer); one that closed TLS at once made the client's writes fail.
  const piece = Buffer.alloc(1000, 'a');
  const chunk = Buffer.concat([Buffer.from('3e8\r\n'), piece, Buffer.from('\r\n')]);
  for (const [framing, pieces, last] of [
    ['Transfer-Encoding: chunked', Array(64).fill(chunk), Buffer.from('0\r\n\r\n')],
    ['Content-Length: 4000', Array(3).fill(piece), piece],
  ]) {
    const outcome = await new Promise((resolve) => {
      let got = '';
      let error;
      let sending = false;
      let sent = false;  // the whole body, before the connection closed
      const socket = tls.connect({ host: mcp.hostname, port: Number(mcp.port), rejectUnauthorized: false }, () => {
        socket.write(`POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\nContent-Type: application/json\r\n${framing}\r\n\r\n`);
        socket.write(pieces[0]);
      });
      socket.on('data', async (d) => {
        got += d;
        if (sending || !/\r\n\r\n/.test(got)) return;
        sending = true;
        for (const p of [...pieces.slice(1), last]) {
          await sleep(5);
          if (socket.destroyed) return;
          socket.write(p);
        }
        sent = true;
      });
      socket.on('error', (e) => { error = e.code ?? String(e); });
      socket.on('close', () => resolve({ got, error, sent }));
    });
    assert.match(outcome.got, /^HTTP\/1\.1 401/, framing);
    assert.equal(outcome.error, undefined, `${framing}: ${outcome.error}`);
    assert.ok(outcome.sent, `${framing}: the connection closed before the client had sent its body`);
  }
});

test('framing a proxy could read otherwise is refused: Transfer-Encoding not just chunked, on HTTP/1.0, trailers', async () => {
  const body = JSON.stringify(init);
  const auth = `Authorization: Bearer ${SUPER}\r\n`;
  const smuggled = `GET /healthz HTTP/1.1\r\nHost: ${mcp.host}\r\n\r\n`;
  for (const [what, request] of [
    // (Each body a request of its own, which a server reading no body
    // would answer next: smuggled past a proxy that read the body.)
    ['Transfer-Encoding: gzip', `POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\n${auth}Transfer-Encoding: gzip\r\n\r\n${smuggled}`],
    ['Transfer-Encoding: chunked, identity',
     `POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\n${auth}Transfer-Encoding: chunked, identity\r\n\r\n${smuggled}`],
    ['two Transfer-Encoding lines',
     `POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\n${auth}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['chunked on HTTP/1.0', `POST /mcp HTTP/1.0\r\nHost: ${mcp.host}\r\n${auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['a trailer field', `POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\n${auth}Content-Type: application/json\r\n` +
                        'Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n' +
                        `${body.length.toString(16)}\r\n${body}\r\n0\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n`],
  ]) {
    const text = await answerThenClose(request);
    // 400, or (Beast refuses some while parsing) closed unanswered: never served.
    assert.ok(text === '' || /^HTTP\/1\.[01] 400/.test(text), `${what}: ${text.split('\r\n')[0]}`);
    assert.ok(!/HTTP\/1\.[01] 200/.test(text), `${what}: something was served: ${text}`);
  }
  // A plain chunked body, no trailers, with a key: served.
  const ok = await answerThenClose(`POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\n${auth}Content-Type: application/json\r\n` +
                                   'Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n' +
                                   `Connection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
  assert.match(ok, /^HTTP\/1\.1 200/);
});

test('the admin API: a super-admin creates a viewer and a key for them', async () => {
  const meta = await api('/api/meta', SUPER);
  assert.equal(meta.status, 200);
  const m = await meta.json();
  assert.equal(m.role, 'super_admin');
  assert.equal(m.enforcement.kernel, 'absent');  // never claimed: this mcpd has no agent configured
  assert.equal(m.egress, 'unknown');

  const user = await api('/api/users', SUPER, { method: 'POST', body: JSON.stringify({ name: 'vic', role: 'viewer' }) });
  assert.equal(user.status, 201);
  const { id } = await user.json();
  const key = await api('/api/keys', SUPER, { method: 'POST', body: JSON.stringify({ name: 'vic-laptop', scopes: 'read,admin', user_id: id }) });
  assert.equal(key.status, 201);
  const k = await key.json();
  assert.match(k.token, /^slk_[0-9a-f]{16}_/);
  viewerKey = k.token;
  viewerKeyId = k.id;
  const list = await (await api('/api/keys', SUPER)).json();
  assert.ok(list.keys.some((x) => x.id === k.id));
  assert.ok(!JSON.stringify(list).includes(k.token.slice(22)), 'secrets are never listed');
});

test('a key never mints a stronger or longer-lived key', async () => {
  const weak = await api('/api/keys', SUPER, { method: 'POST', body: JSON.stringify({ name: 'weak', scopes: 'read,admin', expires_in_seconds: 3600 }) });
  assert.equal(weak.status, 201);
  const w = await weak.json();
  const stronger = await api('/api/keys', w.token, { method: 'POST', body: JSON.stringify({ name: 'up', scopes: 'read,query,admin' }) });
  assert.equal(stronger.status, 403);
  const longer = await api('/api/keys', w.token, { method: 'POST', body: JSON.stringify({ name: 'long', scopes: 'read' }) });
  assert.equal(longer.status, 201);
  const list = await (await api('/api/keys', SUPER)).json();
  const weakRec = list.keys.find((k) => k.id === w.id);
  const child = list.keys.find((k) => k.name === 'long');
  assert.ok(child.expires_ms !== null && child.expires_ms <= weakRec.expires_ms);
});

test('a key without the admin scope is an MCP credential only, whatever its role', async () => {
  // The super-admin's own key for an AI client: read and query, no admin.
  const made = await api('/api/keys', SUPER, { method: 'POST', body: JSON.stringify({ name: 'for-the-ai', scopes: 'read,query' }) });
  assert.equal(made.status, 201);
  const ai = (await made.json()).token;
  assert.equal((await api('/api/meta', ai)).status, 200);
  for (const [path, init] of [
    ['/api/keys', {}],
    ['/api/keys', { method: 'POST', body: JSON.stringify({ name: 'spare', scopes: 'read' }) }],
    ['/api/users', {}],
    ['/api/audit', {}],
    ['/api/meta/security', { method: 'PUT', body: JSON.stringify({ allow_llm_egress: true, allow_prospecting: false, discovery_samples: false, egress_allowlist: [] }) }],
  ]) {
    const r = await api(path, ai, init);
    assert.equal(r.status, 403, `${init.method ?? 'GET'} ${path}`);
    assert.match(await r.text(), /admin scope/);
  }
});

test('the admin API refuses a viewer what the matrix refuses', async () => {
  const meta = await api('/api/meta', viewerKey);
  assert.equal(meta.status, 200);
  const m = await meta.json();
  assert.equal(m.enforcement.kernel, 'absent');
  assert.equal(m.enforcement.detail, undefined);  // why the kernel lags is for admins
  assert.equal((await (await api('/api/meta', SUPER)).json()).enforcement.detail.length > 0, true);
  assert.equal((await api('/api/audit', viewerKey)).status, 403);
  assert.equal((await api('/api/users', viewerKey)).status, 403);
  assert.equal((await api('/api/users', viewerKey, { method: 'POST', body: JSON.stringify({ name: 'x', role: 'viewer' }) })).status, 403);
  assert.equal((await api('/api/saved-queries/q1', viewerKey, { method: 'PUT', body: JSON.stringify({ sql: 'SELECT 1' }) })).status, 403);
  assert.equal((await api('/api/keys', viewerKey, { method: 'POST', body: JSON.stringify({ name: 'k', scopes: 'read', user_id: 1 }) })).status, 403);
  const mine = await (await api('/api/keys', viewerKey)).json();
  assert.deepEqual(mine.keys.map((x) => x.id), [viewerKeyId]);
});

test('an admin lists the keys it may revoke: its tenant\'s, up to its own role', async () => {
  const user = await api('/api/users', SUPER, { method: 'POST', body: JSON.stringify({ name: 'ada', role: 'admin' }) });
  assert.equal(user.status, 201);
  const key = await api('/api/keys', SUPER, { method: 'POST', body: JSON.stringify({ name: 'ada-key', scopes: 'read,admin', user_id: (await user.json()).id }) });
  assert.equal(key.status, 201);
  const ada = (await key.json()).token;
  adaKey = ada;
  const seen = (await (await api('/api/keys', ada)).json()).keys;
  assert.ok(seen.some((k) => k.id === viewerKeyId), 'a viewer\'s key');
  assert.ok(seen.every((k) => k.user !== 'alice'), 'no super-admin\'s key');
  await sleep(1000);  // the two writes' tokens back (admin_rate 5/s): later tests count on the burst
});

test('a user given a lower role or disabled acts no more, at once; enabled again, their keys work', async () => {
  const { id: dee, token: deeKey } = await userWithKey('dee', 'editor', 'read,query,admin');
  const save = () => api('/api/saved-queries/dee_q', deeKey, { method: 'PUT', body: JSON.stringify({ sql: 'SELECT 1 AS one' }) });
  assert.equal((await save()).status, 200);  // an editor's
  const opened = await post(init, { Authorization: `Bearer ${deeKey}` });
  assert.equal(opened.status, 200);
  const session = opened.headers.get('mcp-session-id');
  const patch = (id, body, k = SUPER) => api(`/api/users/${id}`, k, { method: 'PATCH', body: JSON.stringify(body) });

  const lowered = await patch(dee, { role: 'viewer' });
  assert.equal(lowered.status, 200);
  assert.deepEqual(await lowered.json(), { id: dee, tenant_id: 1, name: 'dee', role: 'viewer', disabled: false, revoked_keys: [] });
  assert.equal((await save()).status, 403);  // no editor any more
  const ping = { jsonrpc: '2.0', id: 2, method: 'ping' };
  assert.equal((await post(ping, { Authorization: `Bearer ${deeKey}`, 'Mcp-Session-Id': session, 'MCP-Protocol-Version': '2025-11-25' })).status, 404);

  assert.equal((await patch(dee, { disabled: true })).status, 200);
  assert.equal((await api('/api/meta', deeKey)).status, 401);
  assert.ok(await eventually(async () => {
    const audit = await (await api('/api/audit?kind=auth_failure', SUPER)).json();
    return audit.records.some((r) => r.reason === 'disabled');
  }));
  const changes = (await (await api('/api/audit?kind=admin', SUPER)).json()).records.filter((r) => r.action === 'update_user');
  assert.equal(changes.length, 2);
  assert.equal(changes[0].target_user, 'dee');
  assert.equal(changes[0].disabled, true);
  assert.equal(changes[1].role_before, 'editor');
  assert.equal((await patch(dee, { disabled: false })).status, 200);
  assert.equal((await api('/api/meta', deeKey)).status, 200);

  // An admin changes no one above its own role, grants none above it, and
  // never changes itself; bad input is 400, an unknown user 404.
  await sleep(2000);  // the admin writes' tokens back (admin_rate 5/s, burst 20)
  const users = (await (await api('/api/users', SUPER)).json()).users;
  const alice = users.find((u) => u.role === 'super_admin').id;
  const ada = users.find((u) => u.name === 'ada').id;
  assert.equal((await patch(alice, { disabled: true }, adaKey)).status, 403);
  assert.equal((await patch(dee, { role: 'super_admin' }, adaKey)).status, 403);
  assert.equal((await patch(ada, { role: 'viewer' }, adaKey)).status, 409);
  assert.equal((await patch(alice, { role: 'viewer' })).status, 409);
  const peer = await api('/api/users', SUPER, { method: 'POST', body: JSON.stringify({ name: 'abe', role: 'admin' }) });
  assert.equal((await patch((await peer.json()).id, { disabled: true }, adaKey)).status, 403);  // peers cannot disable each other
  for (const bad of [{}, { role: 'root' }, { disabled: 'yes' }, { disabled: true, name: 'x' }]) {
    assert.equal((await patch(dee, bad)).status, 400, JSON.stringify(bad));
  }
  assert.equal((await api('/api/users/abc', SUPER, { method: 'PATCH', body: '{"disabled":true}' })).status, 400);
  assert.equal((await patch(999999, { disabled: true })).status, 404);
  assert.equal((await api(`/api/users/${dee}`, SUPER)).status, 405);
  assert.equal((await patch(dee, { disabled: true }, viewerKey)).status, 403);  // the matrix: viewers manage no users

  // Keys whose tokens someone else has seen go with a change that would
  // give that someone more: raised to ada's own role, the keys ada minted
  // for vee; ada disabled, the keys ada minted for others.
  await sleep(2000);
  const revoked = async (keyId) => (await (await api('/api/keys', SUPER)).json()).keys.find((k) => k.id === keyId).revoked_ms !== null;
  const vee = await userWithKey('vee', 'viewer', 'read', adaKey);
  const wes = await userWithKey('wes', 'viewer', 'read', adaKey);
  const raised = await patch(vee.id, { role: 'editor' }, adaKey);  // still below ada: ada could mint it that key
  assert.equal(raised.status, 200);
  assert.deepEqual((await raised.json()).revoked_keys, []);
  const peered = await patch(vee.id, { role: 'admin' }, adaKey);  // ada's peer now: ada could not
  assert.equal(peered.status, 200);
  assert.deepEqual((await peered.json()).revoked_keys, [vee.keyId]);
  assert.ok(await revoked(vee.keyId));
  assert.ok(!(await revoked(wes.keyId)));
  // Lowered to editor, ada keeps the key it minted for a viewer, not the
  // one for an editor (ada could not mint that now); disabled, it keeps none.
  await sleep(1000);
  const xen = await userWithKey('xen', 'editor', 'read', adaKey);
  const demoted = await patch(ada, { role: 'editor' });
  assert.equal(demoted.status, 200);
  assert.deepEqual((await demoted.json()).revoked_keys, [xen.keyId]);
  const gone = await patch(ada, { disabled: true });
  assert.equal(gone.status, 200);
  assert.deepEqual((await gone.json()).revoked_keys, [wes.keyId]);
  assert.ok(await revoked(wes.keyId));
  // Only a super_admin (or the operator) lets a disabled user back in.
  const abe = (await (await api('/api/users', SUPER)).json()).users.find((u) => u.name === 'abe').id;
  const abeKey = await api('/api/keys', SUPER, { method: 'POST', body: JSON.stringify({ name: 'abe-key', scopes: 'read,admin', user_id: abe }) });
  const abeToken = (await abeKey.json()).token;
  assert.equal((await patch(wes.id, { disabled: true }, abeToken)).status, 200);
  assert.equal((await patch(wes.id, { disabled: false }, abeToken)).status, 403);
  // Nor is a key minted for a disabled user (it would come alive with them).
  const forDisabled = await api('/api/keys', SUPER, { method: 'POST', body: JSON.stringify({ name: 'late', scopes: 'read', user_id: wes.id }) });
  assert.equal(forDisabled.status, 409);
  assert.equal((await patch(wes.id, { disabled: false })).status, 200);
  const noop = await patch(dee, { disabled: false });  // as it is: nothing done
  assert.equal(noop.status, 200);
  assert.equal((await noop.json()).disabled, false);
  await sleep(4200);  // the admin writes' tokens back, and the disabled key's failure out of the lockout window
});

test('the admin API validates its input', async () => {
  assert.equal((await api('/api/keys', SUPER, { method: 'POST', body: 'not json' })).status, 400);
  assert.equal((await api('/api/keys', SUPER, { method: 'POST', body: JSON.stringify({ name: 'k', scopes: 'root' }) })).status, 400);
  assert.equal((await api('/api/keys', SUPER, { method: 'POST', body: JSON.stringify({ name: '../k', scopes: 'read' }) })).status, 400);
  assert.equal((await api('/api/users', SUPER, { method: 'POST', body: JSON.stringify({ name: 'z', role: 'root' }) })).status, 400);
  assert.equal((await api('/api/audit?limit=5000', SUPER)).status, 400);
  assert.equal((await api('/api/saved-queries/bad', SUPER, { method: 'PUT', body: JSON.stringify({ sql: 'DELETE FROM customers' }) })).status, 400);
  assert.equal((await api('/api/saved-queries/two', SUPER, { method: 'PUT', body: JSON.stringify({ sql: 'SELECT id FROM customers WHERE id = ?', params: [] }) })).status, 400);
  const ok = await api('/api/saved-queries/by_id', SUPER, { method: 'PUT', body: JSON.stringify({ sql: 'SELECT id FROM customers WHERE id = ?', params: [{ name: 'id', type: 'integer' }] }) });
  assert.equal(ok.status, 200);
  assert.equal((await api('/api/nothing', SUPER)).status, 404);
});

test('a revoked key is refused at once', async () => {
  assert.equal((await api(`/api/keys/${viewerKeyId}`, SUPER, { method: 'DELETE' })).status, 200);
  assert.equal((await api('/api/meta', viewerKey)).status, 401);
  // Failed authentications are audited without holding up the 401.
  assert.ok(await eventually(async () => {
    const audit = await (await api('/api/audit?kind=auth_failure', SUPER)).json();
    return audit.records.some((r) => r.reason === 'revoked');
  }));
  await sleep(2100);  // the revoked key's failure ages out of the lockout window
});

test('a key revoked while its request\'s body is still arriving is refused once the body is in', async () => {
  const minted = await api('/api/keys', SUPER, { method: 'POST', body: JSON.stringify({ name: 'slow', scopes: 'read' }) });
  assert.equal(minted.status, 201);
  const k = await minted.json();
  const body = JSON.stringify(init);
  const text = await new Promise((resolve, reject) => {
    const socket = tls.connect({ host: mcp.hostname, port: Number(mcp.port), rejectUnauthorized: false }, async () => {
      // The header (admitted: the key is live), then the revocation, then the body.
      socket.write(`POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\nAuthorization: Bearer ${k.token}\r\n` +
                   'Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n' +
                   `Content-Length: ${body.length}\r\n\r\n`);
      await sleep(200);
      assert.equal((await api(`/api/keys/${k.id}`, SUPER, { method: 'DELETE' })).status, 200);
      socket.write(body);
    });
    let got = '';
    socket.on('data', (d) => { got += d; });
    socket.on('end', () => resolve(got));
    socket.on('error', reject);
  });
  assert.match(text, /^HTTP\/1\.1 401/);
  await sleep(2100);  // the failure ages out of the lockout window
});

test('a role lowered while a request\'s body is still arriving: the request acts with the lower role', async () => {
  const { id: eli, token } = await userWithKey('eli', 'admin', 'read,admin');
  const body = JSON.stringify({ name: 'made-by-eli', role: 'viewer' });
  const head = await new Promise((resolve, reject) => {
    const socket = tls.connect({ host: mcp.hostname, port: Number(mcp.port), rejectUnauthorized: false }, async () => {
      // The header (admitted as an admin), then the demotion, then the body.
      socket.write(`POST /api/users HTTP/1.1\r\nHost: ${mcp.host}\r\nAuthorization: Bearer ${token}\r\n` +
                   `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
      await sleep(200);
      assert.equal((await api(`/api/users/${eli}`, SUPER, { method: 'PATCH', body: JSON.stringify({ role: 'viewer' }) })).status, 200);
      socket.write(body);
    });
    let got = '';
    socket.on('data', (d) => {
      got += d;
      if (got.includes('\r\n\r\n')) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('error', reject);
  });
  assert.match(head, /^HTTP\/1\.1 403/);
  const users = (await (await api('/api/users', SUPER)).json()).users;
  assert.ok(!users.some((u) => u.name === 'made-by-eli'));
});

test('policy versions are stored with who and when, and never reported as kernel-enforced', async () => {
  const none = await (await api('/api/meta/security', SUPER)).json();
  assert.equal(none.current, null);
  assert.equal(none.enforcement.kernel, 'absent');
  const bad = await api('/api/meta/security', SUPER, { method: 'PUT', body: JSON.stringify({ allow_llm_egress: 'yes', egress_allowlist: ['169.254.169.254'] }) });
  assert.equal(bad.status, 400);
  const errors = (await bad.json()).errors.map((e) => e.path);
  assert.ok(errors.includes('allow_llm_egress'), JSON.stringify(errors));
  const policy = { allow_llm_egress: false, allow_prospecting: false, discovery_samples: false, egress_allowlist: ['api.anthropic.com'] };
  const first = await api('/api/meta/security', SUPER, { method: 'PUT', body: JSON.stringify(policy) });
  assert.equal(first.status, 202);  // stored, not enforced: never a silent 200
  const f = await first.json();
  assert.equal(f.version, 1);
  assert.equal(f.stored, true);
  assert.equal(f.enforcement.kernel, 'absent');
  assert.equal(f.enforcement.applied_version, null);
  // Nothing ever reached a kernel: mcpd itself allows nothing meanwhile.
  assert.equal(f.application_policy.allow_llm_egress, false);
  assert.deepEqual(f.application_policy.egress_allowlist, []);
  const second = await (await api('/api/meta/security', SUPER, { method: 'PUT', body: JSON.stringify({ ...policy, allow_llm_egress: true }) })).json();
  assert.equal(second.version, 2);
  const history = await (await api('/api/meta/security?history=1', SUPER)).json();
  assert.deepEqual(history.history.map((h) => h.version), [2, 1]);
  assert.equal(history.history[0].by, 'alice');
  assert.equal(history.current.policy.allow_llm_egress, true);
});

test('traffic per key and user, failed authentications included, for admins only', async () => {
  // The key's id with a wrong secret: anyone can send that, so it is only a
  // claim, counted apart from the key's own failures (its revoked attempt).
  const last = viewerKey.at(-1) === 'A' ? 'B' : 'A';
  assert.equal((await api('/api/meta', viewerKey.slice(0, -1) + last)).status, 401);
  let body;
  assert.ok(await eventually(async () => {
    const t = await api('/api/traffic', SUPER);
    if (t.status !== 200) return false;  // 429: the heavy admin reads' rate (5/s, 20)
    body = await t.json();
    return body.keys[`api_key:${viewerKeyId}`]?.failed_auth_claimed === 1;
  }), JSON.stringify(body));
  assert.ok(Array.isArray(body.recent_calls));
  const viewer = body.keys[`api_key:${viewerKeyId}`];
  assert.equal(viewer.failed_auth, 1, JSON.stringify(body.keys));
  assert.equal((await api('/api/traffic?since_ms=abc', SUPER)).status, 400);
  await sleep(2100);  // the failure ages out of the lockout window; the rate refills
});

test('an answer its client has not read holds the answer budget until written', async () => {
  await sleep(2500);  // five requests' worth follow: the tenant's rate (2/s, burst 5) refills first
  // A 2025-03-26 session, whose batches answer four calls in one response:
  // about 7.6 MB, more than loopback's socket buffers take from a client
  // that does not read (by default at most 4 MiB queued to send and the
  // 128 KiB first receive window).
  const opened = await post({ ...init, params: { ...init.params, protocolVersion: '2025-03-26' } },
                            { Authorization: `Bearer ${SUPER}` });
  assert.equal(opened.status, 200);
  const sid = opened.headers.get('mcp-session-id');
  const one = (id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'run_query', arguments: {
    sql: "SELECT printf('%.*c', 950000, 'x') AS a, printf('%.*c', 950000, 'y') AS b" } } });
  const call = JSON.stringify([one(2), one(3), one(4), one(5)]);
  const held = async () => {
    const text = await (await fetch(new URL('/metrics', base))).text();
    const m = text.match(/^sluice_mcpd_answer_bytes (\d+)$/m);  // every digit, never 7.6e+06
    assert.ok(m, text);
    return Number(m[1]);
  };
  const socket = tls.connect({ host: mcp.hostname, port: Number(mcp.port), rejectUnauthorized: false });
  await new Promise((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject); });
  let got = Buffer.alloc(0);
  let whole = Infinity;
  let done;
  const all = new Promise((resolve) => { done = resolve; });
  socket.on('data', (d) => {
    got = Buffer.concat([got, d]);
    const head = got.indexOf('\r\n\r\n');
    if (head >= 0 && whole === Infinity) whole = head + 4 + Number(/content-length: (\d+)/i.exec(got.subarray(0, head).toString())[1]);
    if (got.length >= whole) done();
  });
  socket.write(`POST /mcp HTTP/1.1\r\nHost: ${mcp.host}\r\nAuthorization: Bearer ${SUPER}\r\n` +
               'Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n' +
               `Mcp-Session-Id: ${sid}\r\nMCP-Protocol-Version: 2025-03-26\r\nContent-Length: ${call.length}\r\n\r\n${call}`);
  await new Promise((resolve) => socket.once('data', resolve));
  socket.pause();  // the answer has begun; its client stops reading
  assert.match(got.subarray(0, 12).toString(), /^HTTP\/1\.1 200/, got.subarray(0, 400).toString());
  assert.ok(await eventually(async () => (await held()) >= 7_000_000), `held ${await held()}; ${got.length} bytes read: ${got.subarray(0, 400)}`);
  socket.resume();
  await all;
  assert.match(got.subarray(0, 12).toString(), /^HTTP\/1\.1 200/);
  assert.ok(await eventually(async () => (await held()) === 0), `held ${await held()} after the answer was read`);
  socket.destroy();
  await sleep(3000);  // the rate refills
});

test('a tenant over its rate limit gets 429 with Retry-After', async () => {
  const statuses = [];
  let retry;
  for (let i = 0; i < 8; i++) {
    const r = await post(init, { Authorization: `Bearer ${SUPER}` });
    statuses.push(r.status);
    if (r.status === 429) retry = r.headers.get('retry-after');
  }
  assert.ok(statuses.slice(0, 4).every((s) => s === 200), statuses.join(','));
  assert.ok(statuses.includes(429), statuses.join(','));
  assert.match(retry, /^[1-9]\d*$/);
  // Audited too, best-effort and folded (per tenant, by key, user and
  // path, at most one record an interval), and counted in the key's traffic.
  const credential = `api_key:${SUPER.split('_')[1]}`;
  let traffic;
  assert.ok(await eventually(async () => {
    const t = await api('/api/traffic', SUPER);
    if (t.status !== 200) return false;
    traffic = await t.json();
    return traffic.keys[credential]?.rate_limited >= 1;
  }), JSON.stringify(traffic));
  const audit = await (await api('/api/audit?kind=rate_limited', SUPER)).json();
  assert.ok(audit.records.some((r) => r.refused.some((e) => e.credential === credential && e.count >= 1 &&
                                                         e.limit === 'mcp')), JSON.stringify(audit));
  await sleep(3000);  // refill
});

test('too many failures lock the address out, even for a valid key, until the window passes', async () => {
  for (let i = 0; i < 3; i++) assert.equal((await post(init, { Authorization: 'Bearer slk_nope' })).status, 401);
  const locked = await post(init, { Authorization: `Bearer ${SUPER}` });
  assert.equal(locked.status, 429);
  assert.match(locked.headers.get('retry-after'), /^[12]$/);
  await sleep(2100);
  assert.equal((await post(init, { Authorization: `Bearer ${SUPER}` })).status, 200);
  assert.ok(await eventually(async () => {
    const audit = await (await api('/api/audit?kind=lockout', SUPER)).json();
    return audit.records.length >= 1;
  }));
});

test('behind a trusted proxy, lockout and /metrics see the forwarded client, not the proxy', async () => {
  const from = (ip, key) => ({ 'X-Forwarded-For': `198.51.100.1, ${ip}`, ...(key ? { Authorization: `Bearer ${key}` } : {}) });
  for (let i = 0; i < 3; i++) assert.equal((await post(init, from('203.0.113.7', 'slk_nope'))).status, 401);
  assert.equal((await post(init, from('203.0.113.7', SUPER))).status, 429);  // that client is locked out
  assert.equal((await post(init, from('203.0.113.8', SUPER))).status, 200);  // another one is not
  assert.equal((await post(init, { Authorization: `Bearer ${SUPER}` })).status, 200);  // nor the proxy itself
  // /metrics is for loopback clients: one outside, come through the proxy, is refused.
  assert.equal((await fetch(new URL('/metrics', base), { headers: from('203.0.113.9') })).status, 403);
  assert.equal((await fetch(new URL('/metrics', base))).status, 200);
  // A proxy that adds its own X-Forwarded-For line after the client's: the
  // client's line (here claiming loopback) must not pass for the address
  // the proxy saw. (fetch would fold the lines into one; raw HTTP here.)
  const status = await new Promise((resolve, reject) => {
    const socket = tls.connect({ host: mcp.hostname, port: Number(mcp.port), rejectUnauthorized: false }, () => {
      socket.end(`GET /metrics HTTP/1.1\r\nHost: ${mcp.host}\r\nX-Forwarded-For: 127.0.0.1\r\n` +
                 'X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n');
    });
    let text = '';
    socket.on('data', (d) => { text += d; });
    socket.on('end', () => resolve(Number(text.split(' ')[1])));
    socket.on('error', reject);
  });
  assert.equal(status, 403);
  await sleep(2100);  // the lockout window passes
});

// Opens a TLS connection and holds it; resolves to the socket once the
// handshake is done, or to null when the server closes it first.
function hold(localAddress = undefined) {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: mcp.hostname, port: Number(mcp.port), rejectUnauthorized: false, localAddress });
    const refused = () => resolve(null);
    socket.once('secureConnect', () => {
      socket.off('error', refused).off('close', refused);
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('error', refused);
    socket.once('close', refused);
  });
}

test('one client address holds at most max_connections_per_client connections; the trusted proxy more', async () => {
  // The cap here is 8. 127.0.0.1 is the trusted proxy (it carries every
  // client's connections): a client comes from another loopback address.
  const held = [];
  let refusedAt = -1;
  for (let i = 0; i < 12 && refusedAt < 0; i++) {
    const s = await hold('127.0.0.2');
    if (s) held.push(s);
    else refusedAt = i;
  }
  assert.equal(refusedAt, 8);
  // The proxy's address is bounded only by max_connections.
  const proxied = [];
  for (let i = 0; i < 12; i++) proxied.push(await hold('127.0.0.1'));
  assert.ok(proxied.every((s) => s !== null));
  for (const s of [...held, ...proxied]) s.destroy();
  // Given back: the client's address is served again.
  assert.ok(await eventually(async () => (await hold('127.0.0.2').then((s) => { s?.destroy(); return s !== null; }))));
});

test('admin writes share the tenant\'s admin rate limit: 429 with Retry-After', async () => {
  // admin_burst is 20 here; invalid bodies still cost a token (and change nothing).
  const statuses = [];
  for (let i = 0; i < 30; i++) {
    statuses.push((await api('/api/users', SUPER, { method: 'POST', body: '{}' })).status);
  }
  assert.ok(statuses.slice(0, 10).every((s) => s === 400), statuses.join(','));
  assert.ok(statuses.includes(429), statuses.join(','));
});
