/**
 * The migration guard process: plain JavaScript run by `node -e` (like the shutdown
 * watcher), so that it needs neither the built CLI nor a TypeScript loader and runs the
 * same from the library, its CJS build and the tests. Its configuration comes in the
 * environment (`KVMHV_GUARD`, JSON; never keys, only file paths), so the command line
 * names nothing.
 *
 * Why a separate process: QEMU runs the migration TLS handshake on its main loop with a
 * blocking socket (5.2 to 11.1), so a peer that connects and stays silent freezes QEMU,
 * and Node.js cannot hand an accepted socket to QEMU (no SCM_RIGHTS). The guard therefore
 * owns the network end, admits and authenticates a connection under a deadline, and only
 * then relays bytes to and from QEMU's local UNIX socket. The steps of a migration run in
 * separate processes (accept, migrate, finalize), so it is detached and recorded.
 *
 * Roles:
 * - `destination`: listens on `listenHost:listenPort`; drops a peer whose address is not
 *   in `allowedAddresses` (when given); with `tls`, terminates TLS (CA-verified client
 *   certificate, `allowedDns`) within `handshakeMs`; then connects to QEMU's incoming
 *   `unix:` socket and pipes both ways.
 * - `source`: listens on the UNIX socket `socket` (mode 0600) that QEMU migrates to; for
 *   each connection from QEMU, connects to `targetHost:targetPort` (with `tls`: handshake,
 *   server certificate and `hostname` verified) within `connectMs + handshakeMs`, then
 *   pipes. A failure closes QEMU's side, so QEMU reports a failed migration instead of
 *   blocking.
 *
 * It prints `ready <port>` once listening, logs one line per event to stderr (the
 * instance log), and exits on SIGTERM, when the QEMU process `qemuPid` is gone, when no
 * relay has been open for `idleExitMs` after at least one ended, or after `lifetimeMs`.
 */
export const GUARD_PROCESS_SOURCE = String.raw`
'use strict';
const net = require('node:net');
const tls = require('node:tls');
const fs = require('node:fs');
const { X509Certificate } = require('node:crypto');
const cfg = JSON.parse(process.env.KVMHV_GUARD);
const log = (msg) => { try { process.stderr.write(new Date().toISOString() + ' kvmhv-guard[' + process.pid + '] ' + cfg.role + ': ' + msg + '\n'); } catch {} };
let active = 0, relayed = 0, idleTimer;
let server;
function exit(why) {
  log('exiting: ' + why);
  try { server && server.close(); } catch {}
  if (cfg.role === 'source') { try { fs.unlinkSync(cfg.socket); } catch {} }
  process.exit(0);
}
// SIGTERM (a finalize) stops listening but lets open relays drain: QEMU reports a
// migration completed once it has written everything to its socket, not once the peer has
// it, and multifd's last packets may still be in flight (cutting them left QEMU 10.0's
// destination waiting for them with its main loop blocked). Relays still open after
// drainMs are cut.
let stopping = false;
function stop(why) {
  if (stopping) return;
  stopping = true;
  try { server && server.close(); } catch {}
  if (active === 0) exit(why);
  log('stopping (' + why + '): letting ' + active + ' relay(s) drain');
  setTimeout(() => exit(why + ': relays cut after ' + cfg.drainMs + ' ms'), cfg.drainMs).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGHUP', () => {});
setTimeout(() => exit('lifetime of ' + cfg.lifetimeMs + ' ms reached'), cfg.lifetimeMs).unref();
if (cfg.qemuPid) {
  setInterval(() => {
    try { process.kill(cfg.qemuPid, 0); } catch (e) { if (e.code === 'ESRCH') exit('QEMU (pid ' + cfg.qemuPid + ') is gone'); }
  }, 500).unref();
}
function idleCheck() {
  clearTimeout(idleTimer);
  if (active === 0 && relayed > 0) idleTimer = setTimeout(() => exit('no relay for ' + cfg.idleExitMs + ' ms'), cfg.idleExitMs);
}
const bare = (a) => (a && a.startsWith('::ffff:') ? a.slice(7) : a);
const peerName = (s) => bare(s.remoteAddress) + ':' + s.remotePort;
// One relay. An end is passed on after the bytes before it (pipe), and a side that closes
// makes the other end gracefully, flushing what it still holds (destroying it would drop
// the last bytes of a stream), and be cut drainMs later at the latest; an error tears
// both down at once (the stream is broken: QEMU must see it fail, not wait).
function relay(a, b, what) {
  active++; relayed++;
  clearTimeout(idleTimer);
  let closed = 0, done = false, why = 'closed';
  const finish = () => {
    if (done) return; done = true;
    active--;
    log('relay ' + what + ' closed (' + why + ')');
    if (stopping && active === 0) exit('stopped after the relays drained');
    idleCheck();
  };
  const onClose = (other) => () => {
    closed++;
    if (closed === 2) return finish();
    other.end();
    setTimeout(() => other.destroy(), cfg.drainMs).unref();
  };
  const onError = (e) => { why = e.message; a.destroy(); b.destroy(); };
  a.on('error', onError); b.on('error', onError);
  a.on('close', onClose(b)); b.on('close', onClose(a));
  a.pipe(b); b.pipe(a);
  log('relay ' + what + ' open');
}
const certDn = (raw) => new X509Certificate(raw).subject.split('\n').filter((l) => l !== '').map((l) => {
  const eq = l.indexOf('=');
  if (eq < 0) return l;
  const v = l.slice(eq + 1).replace(/[\\,+"<>;=]/g, (c) => '\\' + c).replace(/^([ #])/, '\\$1').replace(/ $/, '\\ ');
  return l.slice(0, eq) + '=' + v;
}).join(',');
const readPem = (f) => fs.readFileSync(cfg.tls.dir + '/' + f);

if (cfg.role === 'destination') {
  const allowedAddr = cfg.allowedAddresses && new Set(cfg.allowedAddresses.map(bare));
  const allowedDns = cfg.tls && cfg.tls.allowedDns && new Set(cfg.tls.allowedDns);
  const toQemu = (peer, who) => {
    const q = net.createConnection(cfg.qemuSocket);
    const qt = setTimeout(() => { log('QEMU socket did not accept within ' + cfg.handshakeMs + ' ms'); q.destroy(); peer.destroy(); }, cfg.handshakeMs);
    q.once('connect', () => { clearTimeout(qt); relay(peer, q, who + ' -> QEMU'); peer.resume(); });
    q.once('error', (e) => { clearTimeout(qt); log('QEMU socket: ' + e.message); peer.destroy(); });
  };
  // TLS through a tls.Server fed with the admitted sockets: it enforces the CA
  // (rejectUnauthorized) and its own handshake deadline; the DN is checked after.
  const tlsServer = cfg.tls && tls.createServer({ ca: readPem('ca-cert.pem'), cert: readPem('server-cert.pem'), key: readPem('server-key.pem'),
    requestCert: true, rejectUnauthorized: true, handshakeTimeout: cfg.handshakeMs });
  if (tlsServer) {
    tlsServer.on('tlsClientError', (e, t) => { log('refused ' + (t.remoteAddress ? peerName(t) : 'a peer') + ': ' + String(e.message).split('\n')[0]); t.destroy(); });
    tlsServer.on('secureConnection', (t) => {
      const who = t._parent ? peerName(t._parent) : peerName(t);
      clearTimeout(t._parent && t._parent._kvmhvTimer);
      const peer = t.getPeerCertificate();
      const dn = peer && peer.raw ? certDn(peer.raw) : '';
      if (!t.authorized || (allowedDns && !allowedDns.has(dn))) {
        log('refused ' + who + ': ' + (t.authorized ? 'client DN ' + JSON.stringify(dn) + ' is not allowed' : 'not authorized: ' + t.authorizationError));
        t.destroy();
        return;
      }
      log('admitted ' + who + (dn ? ' (' + dn + ')' : ''));
      t.pause();
      toQemu(t, who);
    });
  }
  server = net.createServer({ pauseOnConnect: true }, (sock) => {
    const who = peerName(sock);
    if (allowedAddr && !allowedAddr.has(bare(sock.remoteAddress))) {
      log('refused ' + who + ': address not allowed');
      sock.destroy();
      return;
    }
    sock.on('error', () => {});
    if (!tlsServer) { toQemu(sock, who); return; }
    // Our own deadline too: whatever the TLS stack does, a connection gets handshakeMs.
    sock._kvmhvTimer = setTimeout(() => { log('refused ' + who + ': no completed handshake within ' + cfg.handshakeMs + ' ms'); sock.destroy(); }, cfg.handshakeMs);
    sock.once('close', () => clearTimeout(sock._kvmhvTimer));
    tlsServer.emit('connection', sock);
    sock.resume();
  });
  server.on('error', (e) => { log('listen: ' + e.message); process.exit(3); });
  server.listen({ host: cfg.listenHost, port: cfg.listenPort, exclusive: true }, () => {
    process.stdout.write('ready ' + server.address().port + '\n');
    log('listening on ' + cfg.listenHost + ':' + server.address().port + ' for QEMU at ' + cfg.qemuSocket);
  });
} else {
  const ctx = cfg.tls && tls.createSecureContext({ ca: readPem('ca-cert.pem'), cert: readPem('client-cert.pem'), key: readPem('client-key.pem') });
  const target = cfg.targetHost.replace(/^\[(.*)\]$/, '$1');
  // QEMU connects right after the migrate command that follows this guard's start: a
  // source guard nobody uses (the command failed, its caller died) leaves on its own.
  const unused = setTimeout(() => exit('QEMU did not connect within ' + cfg.idleExitMs + ' ms'), cfg.idleExitMs);
  server = net.createServer({ pauseOnConnect: true }, (q) => {
    clearTimeout(unused);
    // Only QEMU can reach this socket: every connection counts as use, so that one that
    // failed (a refused or silent destination) is followed by the idle exit too.
    relayed++;
    q.on('error', () => {});
    const what = 'QEMU -> ' + cfg.targetHost + ':' + cfg.targetPort;
    const limit = cfg.connectMs + (ctx ? cfg.handshakeMs : 0);
    let out;
    const timer = setTimeout(() => { log(what + ': not connected' + (ctx ? ' and authenticated' : '') + ' within ' + limit + ' ms'); out && out.destroy(); q.destroy(); idleCheck(); }, limit);
    const fail = (e) => { clearTimeout(timer); log(what + ': ' + e.message); out && out.destroy(); q.destroy(); idleCheck(); };
    if (ctx) {
      const opts = { host: target, port: cfg.targetPort, secureContext: ctx, rejectUnauthorized: true,
        checkServerIdentity: (_h, cert) => tls.checkServerIdentity(cfg.tls.hostname, cert) };
      if (net.isIP(cfg.tls.hostname) === 0) opts.servername = cfg.tls.hostname;
      out = tls.connect(opts);
      out.once('secureConnect', () => { clearTimeout(timer); out.removeListener('error', fail); relay(q, out, what); q.resume(); });
    } else {
      out = net.createConnection({ host: target, port: cfg.targetPort });
      out.once('connect', () => { clearTimeout(timer); out.removeListener('error', fail); relay(q, out, what); q.resume(); });
    }
    out.once('error', fail);
  });
  server.on('error', (e) => { log('listen: ' + e.message); process.exit(3); });
  try { fs.unlinkSync(cfg.socket); } catch {}
  const old = process.umask(0o177);
  server.listen(cfg.socket, () => {
    process.umask(old);
    fs.chmodSync(cfg.socket, 0o600);
    process.stdout.write('ready 0\n');
    log('listening on ' + cfg.socket + ' for QEMU, relaying to ' + cfg.targetHost + ':' + cfg.targetPort + (ctx ? ' over TLS' : ''));
  });
}
`;
