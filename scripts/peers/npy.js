// Minimal, strict .npy (format 1.0/2.0/3.0) reader and writer for the ONNX Runtime peer scripts.
// Little-endian C-order arrays of float32/float64/float16 and (u)int8/16/32/64 and bool. Anything else is rejected
// with a message naming the file, so a wrong fixture never turns into silently wrong numbers.
'use strict';
const fs = require('fs');

const DTYPES = {
  '<f4': { name: 'float32', size: 4, array: Float32Array },
  '<f8': { name: 'float64', size: 8, array: Float64Array },
  '<f2': { name: 'float16', size: 2, array: Uint16Array },
  '|u1': { name: 'uint8', size: 1, array: Uint8Array },
  '|i1': { name: 'int8', size: 1, array: Int8Array },
  '<u2': { name: 'uint16', size: 2, array: Uint16Array },
  '<i2': { name: 'int16', size: 2, array: Int16Array },
  '<u4': { name: 'uint32', size: 4, array: Uint32Array },
  '<i4': { name: 'int32', size: 4, array: Int32Array },
  '<u8': { name: 'uint64', size: 8, array: BigUint64Array },
  '<i8': { name: 'int64', size: 8, array: BigInt64Array },
  '|b1': { name: 'bool', size: 1, array: Uint8Array },
};
const BY_NAME = Object.fromEntries(Object.entries(DTYPES).map(([descr, d]) => [d.name, { descr, ...d }]));

class NpyError extends Error {}

function parseHeader(file, buf) {
  if (buf.length < 10 || buf.readUInt32BE(0) !== 0x934e554d || buf[4] !== 0x50 || buf[5] !== 0x59)
    throw new NpyError(`${file}: not a .npy file (bad magic)`);
  const major = buf[6];
  let hlen, start;
  if (major === 1) { hlen = buf.readUInt16LE(8); start = 10; }
  else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new NpyError(`${file}: truncated .npy header`);
    hlen = buf.readUInt32LE(8); start = 12;
  } else throw new NpyError(`${file}: unsupported .npy format version ${major}`);
  if (start + hlen > buf.length) throw new NpyError(`${file}: truncated .npy header`);
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', start, start + hlen);
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw new NpyError(`${file}: malformed .npy header: ${header.trim()}`);
  let d = descr[1];
  if (d === '<u1' || d === '=u1') d = '|u1';
  if (d === '<i1' || d === '=i1') d = '|i1';
  if (d === '<b1') d = '|b1';
  const dtype = DTYPES[d];
  if (!dtype) throw new NpyError(`${file}: unsupported dtype '${descr[1]}' (little-endian numeric types only)`);
  if (fortran[1] === 'True') throw new NpyError(`${file}: Fortran-order arrays are not supported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map((s) => {
    if (!/^\d+$/.test(s)) throw new NpyError(`${file}: bad dimension '${s}' in shape`);
    return Number(s);
  });
  return { dtype, dims, dataStart: start + hlen };
}

/** Reads a .npy file: { dtype: 'float32'|..., dims: number[], data: TypedArray }. */
function readNpy(file) {
  let buf;
  try { buf = fs.readFileSync(file); } catch (e) { throw new NpyError(`${file}: cannot read (${e.code || e.message})`); }
  const { dtype, dims, dataStart } = parseHeader(file, buf);
  const count = dims.reduce((a, b) => a * b, 1);
  const bytes = count * dtype.size;
  if (buf.length - dataStart !== bytes)
    throw new NpyError(`${file}: shape [${dims}] of ${dtype.name} needs ${bytes} data bytes, file has ${buf.length - dataStart}`);
  let data;
  const off = buf.byteOffset + dataStart;
  if (off % dtype.size === 0) data = new dtype.array(buf.buffer, off, count);
  else data = new dtype.array(buf.buffer.slice(off, off + bytes));  // misaligned: copy once
  return { dtype: dtype.name, dims, data };
}

/** Writes a typed array as .npy; dtypeName as in readNpy ('float32', 'int64', ...). */
function writeNpy(file, dtypeName, dims, data) {
  const d = BY_NAME[dtypeName];
  if (!d) throw new NpyError(`${file}: cannot write dtype ${dtypeName}`);
  const count = dims.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new NpyError(`${file}: ${data.length} values do not fill shape [${dims}]`);
  const shapeStr = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${d.descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.writeUInt32BE(0x934e554d, 0); pre[4] = 0x50; pre[5] = 0x59; pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, pre); fs.writeSync(fd, Buffer.from(header, 'latin1')); fs.writeSync(fd, body);
  } finally { fs.closeSync(fd); }
}

module.exports = { readNpy, writeNpy, NpyError, DTYPES };
