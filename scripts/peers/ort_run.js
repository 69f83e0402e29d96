#!/usr/bin/env node
// Runs an ONNX model with ONNX Runtime (onnxruntime-node, CPU) on .npy inputs, in batches along axis 0, and writes
// the outputs as .npy. Prints one JSON line with timings and peak RSS, so it serves both the peer tests (numerics)
// and the peer benchmarks (speed, memory). QDQ models work like any other model; graph optimizations are
// configurable because ORT fuses QDQ pairs into integer kernels at 'extended'/'all', which changes numerics.
//
//   node scripts/peers/ort_run.js --model M.onnx --input X.npy [--input NAME=Y.npy ...] [--output OUT.npy]
//        [--all-outputs DIR] [--outputs NAME,NAME] [--batch N] [--threads N] [--repeats N] [--warmup N]
//        [--opt-level disabled|basic|extended|layout|all]
//   node scripts/peers/ort_run.js --baseline      # only loads onnxruntime; prints its peak RSS (memory baseline)
//
// Exit status: 0 ok, 2 bad arguments or input, 3 ONNX Runtime error.
'use strict';
const fs = require('fs');
const path = require('path');
const { readNpy, writeNpy, NpyError } = require('./npy.js');

const t0 = process.hrtime.bigint();
const ms = (a, b) => Number(b - a) / 1e6;

function usage(msg) {
  if (msg) process.stderr.write(`ort_run.js: ${msg}\n`);
  process.stderr.write('usage: ort_run.js --model M.onnx --input X.npy [--input NAME=X.npy] [--output Y.npy] ' +
    '[--all-outputs DIR] [--outputs A,B] [--batch N] [--threads N] [--repeats N] [--warmup N] ' +
    '[--opt-level disabled|basic|extended|layout|all] | --baseline\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { inputs: [], batch: 0, threads: 1, repeats: 1, warmup: 0, optLevel: 'all', outputs: null,
              output: null, allOutputs: null, model: null, baseline: false };
  const intArg = (name, v, min) => {
    if (v === undefined || !/^\d+$/.test(v) || Number(v) < min) usage(`${name} needs an integer >= ${min}, got '${v}'`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const next = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
    switch (a) {
      case '--model': o.model = next(); break;
      case '--input': o.inputs.push(next()); break;
      case '--output': o.output = next(); break;
      case '--all-outputs': o.allOutputs = next(); break;
      case '--outputs': o.outputs = next().split(',').filter((s) => s.length); break;
      case '--batch': o.batch = intArg(a, next(), 0); break;
      case '--threads': o.threads = intArg(a, next(), 0); break;
      case '--repeats': o.repeats = intArg(a, next(), 1); break;
      case '--warmup': o.warmup = intArg(a, next(), 0); break;
      case '--opt-level': o.optLevel = next(); break;
      case '--baseline': o.baseline = true; break;
      case '-h': case '--help': usage();
      default: usage(`unknown argument '${a}'`);
    }
  }
  if (!['disabled', 'basic', 'extended', 'layout', 'all'].includes(o.optLevel))
    usage(`--opt-level must be disabled, basic, extended, layout or all, got '${o.optLevel}'`);
  if (!o.baseline) {
    if (!o.model) usage('--model is required');
    if (!o.inputs.length) usage('at least one --input is required');
  }
  return o;
}

// onnxruntime-node lives in .peers/ at the repository root (scripts/setup.sh --peers); QUANTSIM_PEERS_DIR overrides.
function loadOrt() {
  const peers = process.env.QUANTSIM_PEERS_DIR || path.resolve(__dirname, '..', '..', '.peers');
  const dir = path.join(peers, 'node_modules', 'onnxruntime-node');
  if (!fs.existsSync(dir)) {
    process.stderr.write(`ort_run.js: onnxruntime-node not found in ${dir}; run 'make peers' (scripts/setup.sh --peers)\n`);
    process.exit(2);
  }
  return require(dir);
}

function halfToFloat(h) {
  const s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

// Float outputs are written as float32 (the comparison format); integer and bool outputs keep their dtype.
function toWritable(type, data) {
  if (type === 'float32') return { dtype: 'float32', data };
  if (type === 'float64') return { dtype: 'float32', data: Float32Array.from(data) };
  if (type === 'float16') {
    const out = new Float32Array(data.length);
    if (data instanceof Uint16Array) for (let i = 0; i < data.length; ++i) out[i] = halfToFloat(data[i]);
    else for (let i = 0; i < data.length; ++i) out[i] = data[i];
    return { dtype: 'float32', data: out };
  }
  return { dtype: type, data };
}

function fail(code, msg) { process.stderr.write(`ort_run.js: ${msg}\n`); process.exit(code); }

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const ort = loadOrt();
  const tLoaded = process.hrtime.bigint();
  if (o.baseline) {
    console.log(JSON.stringify({ baseline: true, ort_version: ort.env.versions ? ort.env.versions.common : null,
      require_ms: ms(t0, tLoaded), peak_rss_kb: process.resourceUsage().maxRSS }));
    return;
  }

  const sessionOptions = { intraOpNumThreads: o.threads, interOpNumThreads: 1, executionMode: 'sequential',
                           graphOptimizationLevel: o.optLevel, logSeverityLevel: 3 };
  let session;
  const tLoad0 = process.hrtime.bigint();
  try { session = await ort.InferenceSession.create(o.model, sessionOptions); }
  catch (e) { fail(3, `cannot load model ${o.model}: ${e.message}`); }
  const tLoad1 = process.hrtime.bigint();

  // Inputs: "X.npy" binds model inputs in order; "NAME=X.npy" binds by name.
  const feeds = {};
  let positional = 0;
  for (const spec of o.inputs) {
    const eq = spec.indexOf('=');
    let name, file;
    if (eq > 0 && !fs.existsSync(spec)) { name = spec.slice(0, eq); file = spec.slice(eq + 1); }
    else {
      if (positional >= session.inputNames.length) fail(2, `more inputs given than the model has (${session.inputNames.join(', ')})`);
      name = session.inputNames[positional++]; file = spec;
    }
    if (!session.inputNames.includes(name)) fail(2, `model has no input '${name}' (inputs: ${session.inputNames.join(', ')})`);
    if (feeds[name]) fail(2, `input '${name}' given twice`);
    try { feeds[name] = readNpy(file); } catch (e) { fail(2, e instanceof NpyError ? e.message : String(e)); }
  }
  const missing = session.inputNames.filter((n) => !feeds[n]);
  if (missing.length) fail(2, `no data for model input(s) ${missing.join(', ')}`);

  // Batches along axis 0, shared by all inputs.
  const names = Object.keys(feeds);
  const n0 = feeds[names[0]].dims.length ? feeds[names[0]].dims[0] : 1;
  for (const n of names) {
    const d = feeds[n].dims;
    if (o.batch && (!d.length || d[0] !== n0))
      fail(2, `--batch needs every input to share axis 0 (input '${n}' has shape [${d}], expected ${n0} rows)`);
  }
  const batch = o.batch && o.batch < n0 ? o.batch : n0;
  const nbatches = o.batch ? Math.max(1, Math.ceil(n0 / batch)) : 1;
  const batchFeeds = [];
  for (let b = 0; b < nbatches; ++b) {
    const f = {};
    for (const n of names) {
      const { dtype, dims, data } = feeds[n];
      if (nbatches === 1) { f[n] = new ort.Tensor(dtype === 'float16' ? 'float16' : dtype, data, dims); continue; }
      const row = dims.slice(1).reduce((a, c) => a * c, 1);
      const rows = Math.min(batch, n0 - b * batch);
      f[n] = new ort.Tensor(dtype, data.subarray(b * batch * row, (b * batch + rows) * row), [rows, ...dims.slice(1)]);
    }
    batchFeeds.push(f);
  }
  const fetch = o.outputs || (o.allOutputs ? session.outputNames : [session.outputNames[0]]);
  for (const n of fetch) if (!session.outputNames.includes(n)) fail(2, `model has no output '${n}' (outputs: ${session.outputNames.join(', ')})`);

  const runOnce = async (keep) => {
    const results = [];
    const tb = [];
    for (const f of batchFeeds) {
      const a = process.hrtime.bigint();
      let r;
      try { r = await session.run(f, fetch); } catch (e) { fail(3, `run failed: ${e.message}`); }
      tb.push(ms(a, process.hrtime.bigint()));
      if (keep) results.push(r);
    }
    return { results, tb };
  };

  const warm = [];
  for (let i = 0; i < o.warmup; ++i) warm.push((await runOnce(false)).tb.reduce((a, b) => a + b, 0));
  const totals = [];
  let kept = null, perBatch = null;
  for (let i = 0; i < o.repeats; ++i) {
    const { results, tb } = await runOnce(i === o.repeats - 1);
    totals.push(tb.reduce((a, b) => a + b, 0));
    if (results.length) { kept = results; perBatch = tb; }
  }

  // Concatenate batch results along axis 0 and write.
  const outShapes = {};
  const writeOne = (name, file) => {
    const parts = kept.map((r) => r[name]);
    let dims = parts[0].dims.slice();
    let data = parts[0].data;
    if (parts.length > 1) {
      let total = 0;
      for (const p of parts) {
        if (!p.dims.length || p.dims.slice(1).join() !== dims.slice(1).join())
          fail(3, `output '${name}' changes shape across batches ([${dims}] vs [${p.dims}]); cannot concatenate`);
        total += p.data.length;
      }
      data = new parts[0].data.constructor(total);
      let off = 0;
      for (const p of parts) { data.set(p.data, off); off += p.data.length; }
      dims[0] = parts.reduce((a, p) => a + p.dims[0], 0);
    }
    outShapes[name] = dims;
    if (file) {
      const w = toWritable(parts[0].type, data);
      try { writeNpy(file, w.dtype, dims, w.data); } catch (e) { fail(2, e.message); }
    }
  };
  if (o.output) writeOne(fetch[0], o.output);
  if (o.allOutputs) {
    fs.mkdirSync(o.allOutputs, { recursive: true });
    for (const n of fetch) writeOne(n, path.join(o.allOutputs, n.replace(/[^A-Za-z0-9_.-]/g, '_') + '.npy'));
  }
  if (!o.output && !o.allOutputs) for (const n of fetch) writeOne(n, null);

  const sorted = totals.slice().sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const tEnd = process.hrtime.bigint();
  const report = {
    model: o.model, threads: o.threads, opt_level: o.optLevel, batch, batches: nbatches, repeats: o.repeats,
    warmup: o.warmup,
    inputs: Object.fromEntries(names.map((n) => [n, feeds[n].dims])), outputs: outShapes,
    require_ms: ms(t0, tLoaded), load_ms: ms(tLoad0, tLoad1),
    run_ms: median, run_ms_min: sorted[0], run_ms_all: totals, warmup_ms: warm,
    per_batch_ms: median / nbatches, last_batches_ms: perBatch.length <= 64 ? perBatch : undefined,
    total_ms: ms(t0, tEnd), peak_rss_kb: process.resourceUsage().maxRSS,
  };
  console.log(JSON.stringify(report));
}

main().catch((e) => fail(3, e && e.stack ? e.stack : String(e)));
