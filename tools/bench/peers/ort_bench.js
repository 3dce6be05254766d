// ort_bench.js: the ONNX Runtime peer of tools/bench/benchmark_peers.py.
//
//   node ort_bench.js --model DIR [--batches 1,16] [--seconds 10]
//       [--threads 2] [--tolerance 1e-3] [--profile PREFIX]
//
// DIR is tools/bench/peers/export_onnx.py's output (model.onnx,
// verify_input.npy, verify_logits.npy). Creates one CPU session (intra-op threads = --threads,
// inter-op 1, sequential, all graph optimisations), checks its logits
// against the PyTorch reference's on the verification images, as one batch
// and the first image alone, and stops with exit status 1 if the largest
// |difference| reaches --tolerance. Then, per batch size, runs random
// normal batches (8 distinct ones cycled, so routing varies) after a
// warm-up and prints one JSON object on stdout:
//   {"runtime": "onnxruntime", "package", "version", "threads",
//    "verify": {"max_abs_diff", "tolerance", "images"},
//    "results": [{"batch", "batches", "images_per_s", "ms_per_batch_mean",
//                 "ms_per_batch_p50", "ms_per_batch_p99"}]}
// --profile PREFIX turns on ONNX Runtime's profiler (a JSON trace per op,
// written to PREFIX_<date>.json) to see where its time goes.
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const DISTINCT_BATCHES = 8;  // as engine_bench: routing varies per batch.
const MAX_WARMUP_BATCHES = 3;  // engine_bench's --warmup_batches default.

function parseArgs(argv) {
  const args = {model: '', batches: '1,16', seconds: '10', threads: '2',
                tolerance: '1e-3', profile: ''};
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!(name in args) || i + 1 >= argv.length) {
      throw new Error(`usage: node ort_bench.js --model DIR [--batches 1,16] ` +
                      `[--seconds S] [--threads N] [--tolerance T] ` +
                      `[--profile PREFIX]; bad argument ${argv[i]}`);
    }
    args[name] = argv[i + 1];
  }
  if (!args.model) throw new Error('--model DIR is required');
  return {model: args.model, seconds: Number(args.seconds),
          batches: args.batches.split(',').map(Number),
          threads: Number(args.threads), tolerance: Number(args.tolerance),
          profile: args.profile};
}

// A little-endian float32 C-order .npy file (numpy's format 1.0 or 2.0/3.0).
function readNpy(file) {
  const buf = fs.readFileSync(file);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  if (!/'descr': '<f4'/.test(header) || /'fortran_order': True/.test(header)) {
    throw new Error(`${file}: not a little-endian float32 C-order array`);
  }
  const shape = header.match(/'shape': \(([^)]*)\)/)[1]
      .split(',').filter((s) => s.trim()).map(Number);
  const offset = start + headerLen;
  const data = new Float32Array(buf.buffer.slice(
      buf.byteOffset + offset, buf.byteOffset + buf.length));
  return {shape, data};
}

// Deterministic standard normal values (mulberry32 + Box-Muller).
function randomNormal(count, seed) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6D2B79F5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const a = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(a);
    if (i + 1 < count) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

async function logits(session, data, shape) {
  const out = await session.run({images: new ort.Tensor('float32', data, shape)});
  return out.logits.data;
}

function maxAbsDiff(a, b) {
  let worst = 0;
  for (let i = 0; i < a.length; ++i) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

// Largest |ORT - reference| over the verification batch and its first image.
async function verify(session, dir) {
  const input = readNpy(path.join(dir, 'verify_input.npy'));
  const expected = readNpy(path.join(dir, 'verify_logits.npy'));
  const batch = input.shape[0];
  let worst = maxAbsDiff(await logits(session, input.data, input.shape),
                         expected.data);
  const one = input.data.subarray(0, input.data.length / batch);
  const classes = expected.data.length / batch;
  worst = Math.max(worst, maxAbsDiff(
      await logits(session, one, [1, ...input.shape.slice(1)]),
      expected.data.subarray(0, classes)));
  return {worst, images: batch, imageShape: input.shape.slice(1)};
}

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

// Warm-up (up to MAX_WARMUP_BATCHES, or until half of `seconds` has gone),
// then batches until `seconds` have passed (at least 2).
async function timeBatch(session, batch, imageShape, seconds) {
  const per = batch * imageShape.reduce((a, b) => a * b, 1);
  const inputs = [];
  for (let i = 0; i < DISTINCT_BATCHES; ++i) {
    inputs.push(new ort.Tensor('float32', randomNormal(per, 1000 + i),
                               [batch, ...imageShape]));
  }
  const now = () => Number(process.hrtime.bigint()) / 1e9;
  const warmStart = now();
  for (let i = 0; i < MAX_WARMUP_BATCHES; ++i) {
    await session.run({images: inputs[i % DISTINCT_BATCHES]});
    if (now() - warmStart > seconds / 2) break;
  }
  const ms = [];
  const start = now();
  while (ms.length < 2 || now() - start < seconds) {
    const t0 = now();
    await session.run({images: inputs[ms.length % DISTINCT_BATCHES]});
    ms.push((now() - t0) * 1e3);
  }
  const elapsed = now() - start;
  const sorted = [...ms].sort((a, b) => a - b);
  return {batch, batches: ms.length, images_per_s: batch * ms.length / elapsed,
          ms_per_batch_mean: ms.reduce((a, b) => a + b, 0) / ms.length,
          ms_per_batch_p50: percentile(sorted, 0.5),
          ms_per_batch_p99: percentile(sorted, 0.99)};
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const options = {
    executionProviders: ['cpu'], intraOpNumThreads: args.threads,
    interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
  if (args.profile) {
    options.enableProfiling = true;
    options.profileFilePrefix = args.profile;
  }
  const session = await ort.InferenceSession.create(
      path.join(args.model, 'model.onnx'), options);
  const check = await verify(session, args.model);
  const report = {
    runtime: 'onnxruntime', package: 'onnxruntime-node',
    version: ort.env.versions.node,
    threads: args.threads,
    verify: {max_abs_diff: check.worst, tolerance: args.tolerance,
             images: check.images},
    results: [],
  };
  process.stderr.write(`ort_bench: max |logit - reference| = ${check.worst}\n`);
  if (!(check.worst < args.tolerance)) {
    console.log(JSON.stringify(report));
    process.stderr.write('ort_bench: ONNX Runtime disagrees with the reference\n');
    process.exit(1);
  }
  for (const batch of args.batches) {
    report.results.push(
        await timeBatch(session, batch, check.imageShape, args.seconds));
  }
  if (args.profile) session.endProfiling();
  console.log(JSON.stringify(report));
}

main().catch((error) => {
  process.stderr.write(`ort_bench: ${error.stack || error}\n`);
  process.exit(2);
});
