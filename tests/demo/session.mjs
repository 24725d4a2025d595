// A short scripted MCP session with the official TypeScript SDK client:
// what an AI client does against sluice-mcpd. Environment: MCPD_URL,
// MCPD_KEY, NODE_EXTRA_CA_CERTS.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const client = new Client({ name: 'sluice-demo', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(process.env.MCPD_URL), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCPD_KEY}` } },
});
await client.connect(transport);
const show = (title, value) => console.log(`\n-- ${title}\n${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}`);

show('server', client.getServerVersion());
show('tools/list', (await client.listTools()).tools.map((t) => `${t.name}: ${t.description.split('.')[0]}`).join('\n'));
const entities = await client.callTool({ name: 'list_entities', arguments: {} });
show('list_entities', entities.structuredContent.entities.map((e) => `${e.name} (${e.columns.map((c) => c.name).join(', ')})`).join('\n'));
const stats = await client.callTool({ name: 'describe_entity', arguments: { entity: 'transactions' } });
show('describe_entity transactions (statistics, never values)', {
  row_count: stats.structuredContent.row_count,
  approximate: stats.structuredContent.approximate,
  columns: stats.structuredContent.column_stats.map((c) => `${c.name}: nulls ${c.null_fraction}, distinct ${c.distinct_count}`),
});
const t0 = performance.now();
const q = await client.callTool({
  name: 'run_query',
  arguments: {
    sql: 'SELECT category, COUNT(*) AS n, SUM(amount_cents) / 100.0 AS total FROM transactions WHERE account_id = ? GROUP BY category ORDER BY n DESC',
    params: [42],
  },
});
show(`run_query (indexed, bound parameter; ${(performance.now() - t0).toFixed(1)} ms round trip)`, q.structuredContent);
const write = await client.callTool({ name: 'run_query', arguments: { sql: "UPDATE accounts SET balance_cents = 0" } });
show('run_query with a write: refused, and audited', write.content[0].text);
const attach = await client.callTool({ name: 'run_query', arguments: { sql: "ATTACH '/etc/passwd' AS p" } });
show('run_query with ATTACH: refused', attach.content[0].text);
await client.close();
