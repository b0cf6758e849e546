// Usage: node node_workers.js MIB ROUNDS. A pool of 4 worker_threads sums the four quarters of
// a MIB MiB Buffer (shared with them) each round, on a timer; the main thread prints the total
// and changes the buffer. The output depends only on the arguments.
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
if (!isMainThread) {
  const view = new Uint32Array(workerData.shared);
  parentPort.on('message', ({ from, to, round }) => {
    let sum = 0;
    for (let i = from; i < to; i += 64) sum = (sum + view[i] * (i % 7 + 1) + round) >>> 0;
    parentPort.postMessage(sum);
  });
  return;
}
const mib = Number(process.argv[2] || 256), rounds = Number(process.argv[3] || 20);
const shared = new SharedArrayBuffer(mib << 20);
const view = new Uint32Array(shared);
for (let i = 0; i < view.length; i += 64) view[i] = (i * 2654435761) >>> 0;
const workers = [0, 1, 2, 3].map(() => new Worker(__filename, { workerData: { shared } }));
const quarter = view.length / 4;
let round = 0;
function step() {
  let pending = 4, total = 0;
  workers.forEach((w, k) => {
    w.once('message', (sum) => {
      total = (total + sum) >>> 0;
      if (--pending === 0) {
        console.log(`round ${round}: ${total.toString(16)}`);
        view[(round * 4099) % view.length] ^= 0xffff;
        if (++round < rounds) setTimeout(step, 100);
        else workers.forEach((x) => x.terminate());
      }
    });
    w.postMessage({ from: k * quarter, to: (k + 1) * quarter, round });
  });
}
setTimeout(step, 100);
