// BullMQ (Node) side of the glidemq benchmark suite; driven by bench/peers/bullmq_node.py.
//
//   node bullmq_bench.js enqueue --url redis://127.0.0.1:P/0 --n 20000 [--bulk]
//       prints "READY", waits for one stdin line, adds n no-op jobs (one by one,
//       awaiting each, or addBulk in chunks of 1000), prints {"elapsed": s}.
//   node bullmq_bench.js preload --url ... --n 20000 [--cpu-ms 20]
//   node bullmq_bench.js worker  --url ... --concurrency 100 [--cpu-ms 20]
//       runs a Worker on queue "bench" until SIGTERM/SIGINT. With --cpu-ms the
//       processor runs a JS spin loop calibrated here to that many ms.
'use strict';
const { Queue, Worker } = require('bullmq');

function parse(argv) {
  const a = { mode: argv[2], n: 0, bulk: false, concurrency: 1, cpuMs: 0, url: '' };
  for (let i = 3; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--bulk') a.bulk = true;
    else if (k === '--url') a.url = argv[++i];
    else if (k === '--n') a.n = Number(argv[++i]);
    else if (k === '--concurrency') a.concurrency = Number(argv[++i]);
    else if (k === '--cpu-ms') a.cpuMs = Number(argv[++i]);
    else throw new Error('unknown argument ' + k);
  }
  const u = new URL(a.url);
  a.connection = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
  return a;
}

function spin(iters) {
  let acc = 0;
  for (let i = 0; i < iters; i++) acc = (acc * 31 + i) >>> 0;
  return acc;
}

function timeSpin(iters) {
  const t0 = process.hrtime.bigint();
  spin(iters);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

// Iterations of spin() taking `ms` here after JIT warm-up, and the median
// measured time of that count (the adapter uses it as this system's t_job).
function calibrate(ms) {
  let iters = 1e6;
  for (let w = 0; w < 20; w++) spin(iters); // let the JIT settle first
  for (let pass = 0; pass < 3; pass++) {
    let best = Infinity;
    for (let r = 0; r < 7; r++) best = Math.min(best, timeSpin(iters));
    iters = Math.max(1, Math.floor(iters * ms / best));
  }
  const times = Array.from({ length: 9 }, () => timeSpin(iters)).sort((a, b) => a - b);
  return { iters, tJobMs: times[4] };
}

async function add(queue, n, bulk, data) {
  if (bulk) {
    for (let i = 0; i < n; i += 1000) {
      const size = Math.min(1000, n - i);
      await queue.addBulk(Array.from({ length: size }, () => ({ name: 'noop', data })));
    }
  } else {
    for (let i = 0; i < n; i++) await queue.add('noop', data);
  }
}

function readLine() {
  return new Promise((resolve) => {
    process.stdin.once('data', () => resolve());
  });
}

async function main() {
  const a = parse(process.argv);
  if (a.mode === 'enqueue' || a.mode === 'preload') {
    const queue = new Queue('bench', { connection: a.connection });
    await queue.waitUntilReady();
    const data = a.cpuMs ? { cpuMs: a.cpuMs } : {};
    if (a.mode === 'enqueue') {
      process.stdout.write('READY\n');
      await readLine();
    }
    const t0 = process.hrtime.bigint();
    await add(queue, a.n, a.mode === 'preload' || a.bulk, data);
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(JSON.stringify({ elapsed }) + '\n');
    await queue.close();
    process.exit(0);
  } else if (a.mode === 'worker') {
    let iters = 0;
    if (a.cpuMs) {
      const cal = calibrate(a.cpuMs);
      iters = cal.iters;
      const IORedis = require('ioredis');
      const r = new IORedis(a.connection);
      await r.rpush('bench:node_t_job_ms', String(cal.tJobMs));
      await r.quit();
    }
    const worker = new Worker('bench', async () => { if (iters) spin(iters); },
      { connection: a.connection, concurrency: a.concurrency });
    const stop = async () => { await worker.close(true); process.exit(0); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    worker.on('error', (e) => console.error('worker error', e));
  } else {
    throw new Error('unknown mode ' + a.mode);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
