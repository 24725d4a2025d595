// An auth-injecting proxy for the MCP conformance suite, which cannot send
// credentials: plain HTTP on 127.0.0.1 (port printed on stdout) to
// sluice-mcpd over HTTPS, adding `Authorization: Bearer $MCPD_KEY` to every
// request. Responses (JSON or SSE) are streamed through unchanged.
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';

const upstream = new URL(process.env.MCPD_URL);
const ca = fs.readFileSync(process.env.MCPD_CA);
const key = process.env.MCPD_KEY;

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${key}`, host: upstream.host };
  const out = https.request(
    { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers, ca },
    (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    },
  );
  out.on('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(out);
});
server.listen(0, '127.0.0.1', () => console.log(`proxy listening on ${server.address().port}`));
