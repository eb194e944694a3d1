// End-to-end: the npm `proxmox-api` client drives isolib's download-url and polls the task.
// Self-contained: spawns the daemon with its own config on a free 127.0.0.1 port and serves the
// file with node's own http server; everything is cleaned up afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync, openSync, closeSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import proxmoxApi from 'proxmox-api';

process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
process.removeAllListeners('warning'); // the TLS-verify-off warning is expected here

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const BIN = process.env.ISOLIB_BIN || path.join(REPO, 'target', 'debug', 'isolib');
const NODE = 'testnode';
const TOKEN_ID = 'root@pam!admin';
const SECRET = randomUUID();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let tmp;
let origin;
let originPort;
let daemon;
let daemonPort;
let logFd;
const payload = randomBytes(1024 * 1024 + 123);
const sha256 = createHash('sha256').update(payload).digest('hex');

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'isolib-node-'));
  mkdirSync(path.join(tmp, 'state'));
  mkdirSync(path.join(tmp, 'local'));

  origin = http.createServer((req, res) => {
    if (req.url.split('?')[0] !== '/files/node.iso') {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/x-iso9660-image', 'Content-Length': payload.length });
    res.end(req.method === 'HEAD' ? undefined : payload);
  });
  await new Promise((r) => origin.listen(0, '127.0.0.1', r));
  originPort = origin.address().port;

  daemonPort = await freePort();
  const cfg = path.join(tmp, 'isolib.toml');
  writeFileSync(cfg, [
    `node = "${NODE}"`,
    `listen = "127.0.0.1:${daemonPort}"`,
    'tls = true',
    `state-dir = "${path.join(tmp, 'state')}"`,
    `storage-cfg = "${path.join(tmp, 'storage.cfg')}"`,
    `user-cfg = "${path.join(tmp, 'user.cfg')}"`,
    `token-cfg = "${path.join(tmp, 'token.cfg')}"`,
    'auth-fail-delay = 0',
    '',
  ].join('\n'));
  writeFileSync(path.join(tmp, 'storage.cfg'), `dir: local\n\tpath ${path.join(tmp, 'local')}\n\tcontent iso,vztmpl,import\n`);
  writeFileSync(path.join(tmp, 'user.cfg'), 'user:root@pam:1:0:::root@localhost:::\ntoken:root@pam!admin:0:0::\n');
  writeFileSync(path.join(tmp, 'token.cfg'), `${TOKEN_ID} ${SECRET}\n`);

  assert.ok(existsSync(BIN), `isolib binary not found at ${BIN} (run cargo build)`);
  logFd = openSync(path.join(tmp, 'daemon.log'), 'a');
  daemon = spawn(BIN, ['serve', '--config', cfg], { cwd: tmp, stdio: ['ignore', logFd, logFd] });

  // readiness: GET /api2/json/version with the token, for at most 20 s
  const deadline = Date.now() + 20000;
  for (;;) {
    if (daemon.exitCode !== null) throw new Error(`daemon exited early: ${readFileSync(path.join(tmp, 'daemon.log'), 'utf8')}`);
    try {
      const res = await fetch(`https://127.0.0.1:${daemonPort}/api2/json/version`, {
        headers: { Authorization: `PVEAPIToken=${TOKEN_ID}=${SECRET}` },
        signal: AbortSignal.timeout(2000),
      });
      if (res.status === 200) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`daemon not ready: ${readFileSync(path.join(tmp, 'daemon.log'), 'utf8')}`);
    await sleep(100);
  }
});

after(async () => {
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    const exited = await Promise.race([
      new Promise((r) => daemon.once('exit', () => r(true))),
      sleep(10000).then(() => false),
    ]);
    if (!exited) daemon.kill('SIGKILL');
  }
  if (logFd !== undefined) closeSync(logFd);
  if (origin) await new Promise((r) => origin.close(r));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('proxmox-api: download-url, then task status until stopped with OK', async (t) => {
  const px = proxmoxApi({ host: '127.0.0.1', port: daemonPort, tokenID: TOKEN_ID, tokenSecret: SECRET, queryTimeout: 30000 });
  const url = `http://127.0.0.1:${originPort}/files/node.iso`;

  const meta = await px.nodes.$(NODE)['query-url-metadata'].$get({ url });
  assert.deepEqual(meta, { filename: 'node.iso', size: payload.length, mimetype: 'application/x-iso9660-image' });

  const upid = await px.nodes.$(NODE).storage.$('local')['download-url'].$post({
    url, content: 'iso', filename: 'node.iso', checksum: sha256, 'checksum-algorithm': 'sha256', 'verify-certificates': true,
  });
  assert.match(upid, /^UPID:testnode:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:download:node\.iso:root@pam!admin:$/);

  let status;
  const deadline = Date.now() + 60000;
  for (;;) {
    status = await px.nodes.$(NODE).tasks.$(upid).status.$get();
    if (status.status === 'stopped') break;
    assert.equal(status.status, 'running');
    assert.equal(status.exitstatus, undefined, 'no exitstatus while running');
    assert.ok(Date.now() < deadline, 'task did not stop within 60 s');
    await sleep(200);
  }
  assert.equal(status.exitstatus, 'OK');
  assert.equal(status.type, 'download');
  assert.equal(status.id, 'node.iso');
  assert.equal(status.upid, upid);

  const stored = readFileSync(path.join(tmp, 'local', 'template', 'iso', 'node.iso'));
  assert.ok(stored.equals(payload), 'stored bytes equal the served bytes');

  const log = await px.nodes.$(NODE).tasks.$(upid).log.$get({ limit: 0 });
  assert.equal(log[log.length - 1].t, 'TASK OK');
  assert.equal(log[0].t, `downloading ${url} to ${path.join(tmp, 'local', 'template', 'iso', 'node.iso')}`);

  const content = await px.nodes.$(NODE).storage.$('local').content.$get({ content: 'iso' });
  assert.deepEqual(content.map((c) => [c.volid, c.size]), [['local:iso/node.iso', payload.length]]);
});

test('proxmox-api: a failing download ends with a non-OK exitstatus and leaves no file', async () => {
  const px = proxmoxApi({ host: '127.0.0.1', port: daemonPort, tokenID: TOKEN_ID, tokenSecret: SECRET, queryTimeout: 30000 });
  const url = `http://127.0.0.1:${originPort}/files/node.iso`;
  const bad = '0'.repeat(64);
  const upid = await px.nodes.$(NODE).storage.$('local')['download-url'].$post({
    url, content: 'iso', filename: 'bad.iso', checksum: bad, 'checksum-algorithm': 'sha256',
  });
  let status;
  const deadline = Date.now() + 60000;
  do {
    await sleep(200);
    status = await px.nodes.$(NODE).tasks.$(upid).status.$get();
    assert.ok(Date.now() < deadline, 'task did not stop within 60 s');
  } while (status.status !== 'stopped');
  assert.equal(status.exitstatus, `checksum mismatch: got '${sha256}' != expect '${bad}'`);
  assert.equal(existsSync(path.join(tmp, 'local', 'template', 'iso', 'bad.iso')), false);
});

test('proxmox-api: a 400 is thrown with the reason phrase', async () => {
  const px = proxmoxApi({ host: '127.0.0.1', port: daemonPort, tokenID: TOKEN_ID, tokenSecret: SECRET, queryTimeout: 30000 });
  await assert.rejects(
    px.nodes.$(NODE).storage.$('local')['download-url'].$post({ url: 'ftp://x', content: 'iso', filename: 'x.iso' }),
    (err) => {
      assert.match(err.message, /return Error 400 Parameter verification failed\.: /);
      assert.match(err.message, /value does not match the regex pattern/);
      return true;
    },
  );
});
