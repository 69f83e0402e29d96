#!/usr/bin/python3
"""Writes the committed seed corpus of fuzz/corpus/<target>/ (small valid inputs that reach deep into each reader).
Run with Debian's python (needs numpy and onnx): /usr/bin/python3 fuzz/make_seeds.py"""
import io
import json
import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

root = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(root, "corpus")


def write(target, name, data):
    path = os.path.join(corpus, target, name)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- npy: every dtype, both byte orders, format versions 1 and 2, rank 0 to 4, empty arrays.
rng = np.random.default_rng(7)
arrays = {
    "f4_2x3": rng.standard_normal((2, 3)).astype("<f4"),
    "f8_be_4": rng.standard_normal(4).astype(">f8"),
    "i8_scalar": np.array(5, dtype="<i8"),
    "i4_1x2x2x1": np.arange(4, dtype="<i4").reshape(1, 2, 2, 1),
    "i2_3": np.array([-1, 0, 1], dtype="<i2"),
    "u2_be_2": np.array([1, 65535], dtype=">u2"),
    "i1_5": np.array([-128, -1, 0, 1, 127], dtype="i1"),
    "u1_0x3": np.zeros((0, 3), dtype="u1"),
    "b1_4": np.array([True, False, True, True]),
}
for name, a in arrays.items():
    buf = io.BytesIO()
    np.save(buf, a)
    write("npy", name + ".npy", buf.getvalue())
buf = io.BytesIO()
np.lib.format.write_array(buf, np.ones((2, 2), dtype="<f4"), version=(2, 0))
write("npy", "f4_v2.npy", buf.getvalue())

# ---- config: the shipped configs.
for f in sorted(os.listdir(os.path.join(root, "..", "configs"))):
    shutil.copy(os.path.join(root, "..", "configs", f), os.path.join(corpus, "config", f))

# ---- encodings: the three AIMET versions (from AIMET's specification examples).
write("encodings", "v0_6_1.json", json.dumps({
    "version": "0.6.1",
    "activation_encodings": {"input.1": [{"bitwidth": 8, "dtype": "int", "is_symmetric": "False",
                                          "max": 2.196, "min": -0.304, "offset": -31, "scale": 0.0098}]},
    "param_encodings": {"conv1.weight": [
        {"bitwidth": 8, "dtype": "int", "is_symmetric": "True", "max": 0.254, "min": -0.256, "offset": -128, "scale": 0.002},
        {"bitwidth": 8, "dtype": "int", "is_symmetric": "True", "max": 0.127, "min": -0.128, "offset": -128, "scale": 0.001}],
        "fc.bias": [{"bitwidth": 16, "dtype": "float"}]},
    "excluded_layers": [],
    "quantizer_args": {"activation_bitwidth": 8, "dtype": "int", "is_symmetric": True, "param_bitwidth": 8,
                       "per_channel_quantization": True, "quant_scheme": "post_training_tf_enhanced"}}))
write("encodings", "v1_0_0.json", json.dumps({
    "version": "1.0.0",
    "activation_encodings": [{"name": "input.1", "dtype": "INT", "enc_type": "PER_TENSOR", "bw": 8, "is_sym": False,
                              "scale": [0.0098], "offset": [-31]}],
    "param_encodings": [
        {"name": "conv1.weight", "dtype": "INT", "enc_type": "PER_CHANNEL", "bw": 8, "is_sym": True,
         "scale": [0.002, 0.001], "offset": [-128, -128]},
        {"name": "fc.weight", "dtype": "INT", "enc_type": "LPBQ", "bw": 8, "compressed_bw": 4, "is_sym": True,
         "block_size": 64, "scale": [0.0004, 0.0003], "offset": [-128, -128], "per_block_int_scale": [16, 9, 12, 16]},
        {"name": "w.block", "dtype": "INT", "enc_type": "PER_BLOCK", "bw": 4, "is_sym": True, "block_size": 2,
         "scale": [0.1, 0.2, 0.3, 0.4], "offset": [-8, -8, -8, -8]},
        {"name": "ln.weight", "dtype": "FLOAT", "enc_type": "PER_TENSOR", "bw": 16}],
    "excluded_layers": ["fc"],
    "quantizer_args": {"activation_bitwidth": 8, "dtype": "int", "is_symmetric": True, "param_bitwidth": 8,
                       "per_channel_quantization": True, "quant_scheme": "post_training_tf_enhanced"}}))
write("encodings", "v2_0_0.json", json.dumps({
    "version": "2.0.0",
    "encodings": [
        {"name": "input.1", "output_dtype": "uint8", "y_scale": 0.0098, "y_zero_point": 31},
        {"name": "conv1.weight", "output_dtype": "int8", "y_scale": [0.002, 0.001], "axis": 0},
        {"name": "fc.weight", "output_dtype": "int4", "axis": 1, "block_size": 32, "y_scale": [[0.01, 0.02], [0.03, 0.04]]},
        {"name": "conv1.bias", "output_dtype": "int32", "y_scale": [1.96e-05, 9.8e-06], "axis": 0}]}))
write("encodings", "no_version.json", '{"encodings": [{"name": "x", "output_dtype": "uint8", "y_scale": 0.5}]}')


# ---- onnx: small models over the importer's canonicalization paths (old opsets, typed and raw data).
def model(nodes, inputs, outputs, inits, opset, name):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="quantsim-fuzz-seed")
    m.ir_version = 7 if opset >= 13 else 4
    write("onnx", name + ".onnx", m.SerializeToString())


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
b = helper.make_tensor("b", TensorProto.FLOAT, [4], [0.1, 0.2, 0.3, 0.4])  # typed float_data
model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
       helper.make_node("Relu", ["c"], ["y"], name="relu")],
      [vi("x", [1, 3, 8, 8])], [vi("y", [1, 4, 8, 8])], [w, b], 13, "conv_relu_13")

scale = numpy_helper.from_array(np.ones(4, np.float32), "s")
bias = numpy_helper.from_array(np.zeros(4, np.float32), "bb")
mean = numpy_helper.from_array(np.zeros(4, np.float32), "m")
var = numpy_helper.from_array(np.ones(4, np.float32), "v")
model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
       helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-5, name="bn"),
       helper.make_node("Clip", ["n"], ["r"], min=0.0, max=6.0, name="clip"),
       helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
       helper.make_node("Flatten", ["p"], ["f"], axis=1, name="flat"),
       helper.make_node("Softmax", ["f"], ["y"], axis=1, name="sm")],
      [vi("x", ["N", 3, 8, 8])], [vi("y", ["N", 4])], [w, scale, bias, mean, var], 9, "conv_bn_clip_softmax_9")

gw = numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "gw")
gb = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "gb")
model([helper.make_node("MatMul", ["x", "gw"], ["mm"], name="mm"),
       helper.make_node("Add", ["mm", "gb"], ["a"], name="add"),
       helper.make_node("Gemm", ["a", "gw2", "gb"], ["y"], transB=1, name="gemm")],
      [vi("x", [2, 6])], [vi("y", [2, 4])],
      [gw, gb, numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "gw2")], 11, "matmul_add_gemm_11")

model([helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("sv", TensorProto.INT64, [2], [1, -1]), name="const"),
       helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
       helper.make_node("Unsqueeze", ["r"], ["u"], axes=[0], name="unsq"),
       helper.make_node("Squeeze", ["u"], ["q"], axes=[0], name="sq"),
       helper.make_node("Split", ["q"], ["s1", "s2"], axis=1, split=[8, 4], name="split"),
       helper.make_node("Concat", ["s2", "s1"], ["y"], axis=1, name="concat")],
      [vi("x", [1, 3, 2, 2])], [vi("y", [1, 12])], [], 11, "reshape_split_concat_11")

model([helper.make_node("Upsample", ["x", "sc"], ["u"], mode="nearest", name="up"),
       helper.make_node("MaxPool", ["u"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
       helper.make_node("Pad", ["p"], ["y"], pads=[0, 0, 1, 1, 0, 0, 1, 1], name="pad")],
      [vi("x", [1, 2, 4, 4])], [vi("y", [1, 2, 6, 6])],
      [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")], 9, "upsample_pool_pad_9")

model([helper.make_node("QuantizeLinear", ["x", "qs", "qz"], ["q"], name="q"),
       helper.make_node("DequantizeLinear", ["q", "qs", "qz"], ["d"], name="dq"),
       helper.make_node("DequantizeLinear", ["wq", "ws"], ["wd"], axis=0, name="wdq"),
       helper.make_node("MatMul", ["d", "wd"], ["y"], name="mm")],
      [vi("x", [2, 3])], [vi("y", [2, 3])],
      [numpy_helper.from_array(np.array(0.05, np.float32), "qs"), numpy_helper.from_array(np.array(128, np.uint8), "qz"),
       numpy_helper.from_array(rng.integers(-127, 127, (3, 3)).astype(np.int8), "wq"),
       numpy_helper.from_array(np.full(3, 0.01, np.float32), "ws")], 13, "qdq_13")

model([helper.make_node("HardSigmoid", ["x"], ["h"], alpha=0.2, beta=0.5, name="hs"),
       helper.make_node("Mul", ["x", "h"], ["m"], name="mul"),
       helper.make_node("ReduceMean", ["m"], ["y"], axes=[2, 3], keepdims=1, name="rm")],
      [vi("x", [1, 2, 3, 3])], [vi("y", [1, 2, 1, 1])], [], 11, "hardsigmoid_reduce_11")

# ---- regressions/<target>/: hand-made inputs for the size checks (the fuzzers' own finds are added next to them).
reg = os.path.join(root, "regressions")
for t in ("onnx", "npy", "config", "encodings"):
    os.makedirs(os.path.join(reg, t), exist_ok=True)


def write_reg(target, name, data):
    with open(os.path.join(reg, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def claim_model(name, tensor):
    g = helper.make_graph([helper.make_node("Add", ["x", tensor.name], ["y"], name="add")], name,
                          [vi("x", [1])], [vi("y", [1])], [tensor])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    write_reg("onnx", name + ".onnx", m.SerializeToString())


# 4 GiB claimed by dims, 4 bytes present: must be a parse error before any allocation.
def claim(dtype, dims, raw=None, floats=None, ints=None):
    t = TensorProto()
    t.name = "w"
    t.data_type = dtype
    t.dims.extend(dims)
    if raw is not None:
        t.raw_data = raw
    if floats is not None:
        t.float_data.extend(floats)
    if ints is not None:
        t.int32_data.extend(ints)
    return t


claim_model("huge_initializer_raw_data", claim(TensorProto.FLOAT, [1 << 20, 1 << 10], raw=b"\0\0\0\0"))
claim_model("huge_initializer_float_data", claim(TensorProto.FLOAT, [1 << 20, 1 << 10], floats=[0.0]))
claim_model("huge_initializer_int32_data", claim(TensorProto.INT8, [1 << 16, 1 << 16], ints=[1, 2, 3]))
claim_model("huge_initializer_no_data", claim(TensorProto.FLOAT, [1 << 20, 1 << 10]))
claim_model("overflowing_dims", claim(TensorProto.FLOAT, [1 << 62, 1 << 62], floats=[0.0]))



# Models that load but carry hostile constants into the kernels (fuzz_onnx runs small accepted models; session 4
# found these by hand, tests/io/untrusted_inputs_test.cpp has the library-level checks).
def const_model(name, nodes, inits, x_shape=(2, 3), x_type=TensorProto.FLOAT, y_type=TensorProto.FLOAT):
    g = helper.make_graph(nodes, name, [vi("x", list(x_shape), x_type)], [vi("y", None, y_type)],
                          [numpy_helper.from_array(v, k) for k, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    write_reg("onnx", name + ".onnx", m.SerializeToString())


def i32(*v):
    return np.array(v, np.int32)


def i64(*v):
    return np.array(v, np.int64)


def f32(*v):
    return np.array(v, np.float32)


# INT_MIN / -1 raised SIGFPE (from constants, and from data: x cast to int32 plus INT_MIN, divided by -1).
const_model("int_min_div_minus_one", [helper.make_node("Div", ["a", "b"], ["q"], name="div"),
                                      helper.make_node("Cast", ["q"], ["qf"], to=1, name="cast"),
                                      helper.make_node("Add", ["x", "qf"], ["y"], name="add")],
            [("a", i32(-2**31)), ("b", i32(-1))])
const_model("int_min_div_minus_one_from_data", [helper.make_node("Cast", ["x"], ["xi"], to=6, name="cast_in"),
                                                helper.make_node("Add", ["xi", "a"], ["s"], name="add"),
                                                helper.make_node("Div", ["s", "b"], ["q"], name="div"),
                                                helper.make_node("Mod", ["s", "b"], ["r"], name="mod"),
                                                helper.make_node("Add", ["q", "r"], ["t"], name="sum"),
                                                helper.make_node("Cast", ["t"], ["y"], to=1, name="cast_out")],
            [("a", i32(-2**31)), ("b", i32(-1))])
# Integer Pow looped once per unit of the exponent.
const_model("int_pow_huge_exponent", [helper.make_node("Cast", ["x"], ["xi"], to=7, name="cast_in"),
                                      helper.make_node("Pow", ["xi", "e"], ["p"], name="pow"),
                                      helper.make_node("Cast", ["p"], ["y"], to=1, name="cast_out")],
            [("e", i64(4 * 10**18))])
# Range: limit - start overflowed int64 (UB); ceil(1e30) and ceil(NaN) were converted to int64 unchecked (UB).
const_model("range_int64_extremes", [helper.make_node("Range", ["a", "b", "c"], ["r"], name="range"),
                                     helper.make_node("Cast", ["r"], ["rf"], to=1, name="cast"),
                                     helper.make_node("Add", ["x", "rf"], ["y"], name="add")],
            [("a", i64(-2**63)), ("b", i64(2**63 - 1)), ("c", i64(2**62))], x_shape=(4,))
for n, limit in (("range_float_huge", 1e30), ("range_float_nan", float("nan"))):
    const_model(n, [helper.make_node("Range", ["a", "b", "c"], ["r"], name="range"),
                    helper.make_node("Add", ["x", "r"], ["y"], name="add")],
                [("a", f32(0)), ("b", f32(limit)), ("c", f32(1))], x_shape=(1,))
# Pad of 2^40 from the file: loaded (inspect printed an overflowing shape) and failed at run time without a node name.
const_model("pad_inferred_overflow", [helper.make_node("Pad", ["x", "p"], ["y"], name="pad")],
            [("p", i64(0, 0, 1 << 40, 1 << 40))])


def npy_with(header_dict, data):
    h = header_dict
    h += " " * (64 - (10 + len(h) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h.encode() + data


write_reg("npy", "huge_shape.npy", npy_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1125899906842624,), }", b"\0" * 8))
write_reg("npy", "overflowing_shape.npy", npy_with("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }", b""))
write_reg("npy", "header_len_past_end.npy", b"\x93NUMPY\x01\x00\xff\xff{'descr'")
write_reg("encodings", "nan_scale.json", '{"version": "0.6.1", "activation_encodings": {"y": [{"bitwidth": 8, "scale": NaN, "offset": 0}]}}')
write_reg("encodings", "inf_scale.json", '{"version": "2.0.0", "encodings": [{"name": "y", "output_dtype": "uint8", "y_scale": 1e999}]}')
write_reg("encodings", "deep_nesting.json", "[" * 100000 + "]" * 100000)
# A zero point of 2^32 + 3 was narrowed to 3 before the range check; min/max one ulp apart made an offset beyond int64.
write_reg("encodings", "zero_point_beyond_int32.json",
          '{"version": "2.0.0", "encodings": [{"name": "y", "output_dtype": "uint8", "y_scale": 0.1, "y_zero_point": 4294967299}]}')
write_reg("encodings", "min_max_one_ulp_apart.json",
          '{"version": "0.6.1", "activation_encodings": {"y": [{"bitwidth": 16, "min": 1.0, "max": 1.0000000000000002}]}, '
          '"param_encodings": {}}')
write_reg("config", "deep_nesting.json", '{"defaults": ' + "[" * 100000 + "]" * 100000 + "}")
print("seeds written to", corpus, "and", reg)
