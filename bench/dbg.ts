import { HmpParser } from '../src/monitor/hmp-parser.js';
const LINE = Buffer.from(`${'x'.repeat(78)}\r\n`);
for (const mib of [0.25, 0.5, 1]) {
  const p = new HmpParser();
  p.push("QEMU 9.2.0 monitor - type 'help' for more information\r\n(qemu) ");
  p.commandSent('info big');
  const block = Buffer.concat(Array.from({ length: 819 }, () => LINE));
  const t = performance.now();
  p.push('info big\r\n');
  let n = 0;
  for (let sent = 0; sent < mib * 1048576; sent += block.length) { p.push(block); n++; }
  const f = p.push('(qemu) ');
  console.log(mib, n, performance.now() - t, f.length);
}
