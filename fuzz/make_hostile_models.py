#!/usr/bin/python3
"""Writes fuzz/regressions/onnx/hostile_*.onnx: small models that load or fail to load with hostile attributes and
constants (out-of-range axes and indices, zero strides, huge pads, integer division by -1, Range extremes, ...). Each
must end in a quantsim::error or run; fuzz_replay (make test) runs them through the fuzz_onnx body, which also executes
the accepted ones. Run with Debian's python (needs numpy and onnx): /usr/bin/python3 fuzz/make_hostile_models.py"""
import os

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regressions", "onnx")


def model(name, nodes, inits, in_shape=(2, 3), out_shape=None, opset=13, in_type=T.FLOAT):
    g = h.make_graph(nodes, name, [h.make_tensor_value_info("x", in_type, list(in_shape))],
                     [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[nh.from_array(np.array(v), k) for k, v in inits])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 7
    with open(os.path.join(out_dir, "hostile_" + name + ".onnx"), "wb") as f:
        f.write(m.SerializeToString())


i64 = lambda *v: np.array(v, dtype=np.int64)
f32 = lambda *v: np.array(v, dtype=np.float32)
model("gather_const_oob", [h.make_node("Gather", ["x", "idx"], ["y"], axis=1)], [("idx", i64(7))])
model("gather_const_neg_oob", [h.make_node("Gather", ["x", "idx"], ["y"], axis=1)], [("idx", i64(-9))])
model("slice_step0", [h.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])], [("s", i64(0)), ("e", i64(3)), ("a", i64(1)), ("st", i64(0))])
model("pad_huge", [h.make_node("Pad", ["x", "p"], ["y"])], [("p", i64(0, 0, 1<<40, 1<<40))])
model("pad_neg_huge", [h.make_node("Pad", ["x", "p"], ["y"])], [("p", i64(0, -100, 0, 0))])
model("expand_huge", [h.make_node("Expand", ["x", "s"], ["y"])], [("s", i64(1<<31, 1<<20, 3))])
model("tile_huge", [h.make_node("Tile", ["x", "r"], ["y"])], [("r", i64(1<<40, 1<<30))])
model("cos_huge", [h.make_node("ConstantOfShape", ["s"], ["z"]), h.make_node("Add", ["x", "z"], ["y"])], [("s", i64(1<<62, 2))])
model("range_huge", [h.make_node("Range", ["a", "b", "c"], ["r"]), h.make_node("Cast", ["r"], ["rf"], to=1), h.make_node("Add", ["x", "rf"], ["y"])], [("a", f32(0)), ("b", f32(1e30)), ("c", f32(1))])
model("range_delta0", [h.make_node("Range", ["a", "b", "c"], ["r"]), h.make_node("Add", ["x", "r"], ["y"])], [("a", f32(0)), ("b", f32(3)), ("c", f32(0))])
model("range_nan", [h.make_node("Range", ["a", "b", "c"], ["r"]), h.make_node("Add", ["x", "r"], ["y"])], [("a", f32(0)), ("b", f32(np.nan)), ("c", f32(1))])
model("topk_k_big", [h.make_node("TopK", ["x", "k"], ["y", "ix"], axis=1)], [("k", i64(99))])
model("topk_k_neg", [h.make_node("TopK", ["x", "k"], ["y", "ix"], axis=1)], [("k", i64(-1))])
model("onehot_huge", [h.make_node("OneHot", ["ind", "d", "v"], ["y"])], [("ind", i64(0, 1)), ("d", i64(1<<45)), ("v", f32(0, 1))])
model("onehot_ind_oob", [h.make_node("OneHot", ["ind", "d", "v"], ["o"]), h.make_node("Add", ["x", "o"], ["y"])], [("ind", i64(5, 1, 2)), ("d", i64(3)), ("v", f32(0, 1))])
model("split_bad", [h.make_node("Split", ["x", "sp"], ["y", "z"], axis=1)], [("sp", i64(2, 5))])
model("split_neg", [h.make_node("Split", ["x", "sp"], ["y", "z"], axis=1)], [("sp", i64(-1, 4))])
model("transpose_dup", [h.make_node("Transpose", ["x"], ["y"], perm=[0, 0])], [])
model("transpose_oob", [h.make_node("Transpose", ["x"], ["y"], perm=[0, 5])], [])
model("concat_axis_oob", [h.make_node("Concat", ["x", "x"], ["y"], axis=9)], [])
model("softmax_axis_oob", [h.make_node("Softmax", ["x"], ["y"], axis=-9)], [])
model("flatten_axis_oob", [h.make_node("Flatten", ["x"], ["y"], axis=9)], [])
model("unsqueeze_dup", [h.make_node("Unsqueeze", ["x", "a"], ["y"])], [("a", i64(0, 0))])
model("squeeze_non1", [h.make_node("Squeeze", ["x", "a"], ["y"])], [("a", i64(1))])
model("reduce_axes_oob", [h.make_node("ReduceMean", ["x"], ["y"], axes=[7])], [])
model("reshape_two_minus1", [h.make_node("Reshape", ["x", "s"], ["y"])], [("s", i64(-1, -1))])
model("reshape_mismatch", [h.make_node("Reshape", ["x", "s"], ["y"])], [("s", i64(4, 4))])
model("reshape_neg", [h.make_node("Reshape", ["x", "s"], ["y"])], [("s", i64(-6, -1))])
model("where_bcast", [h.make_node("Where", ["c", "x", "z"], ["y"])], [("c", np.array([True, False, True, False])), ("z", f32(1))])
model("add_bcast_bad", [h.make_node("Add", ["x", "z"], ["y"])], [("z", f32(1, 2, 3, 4))])
model("matmul_bad", [h.make_node("MatMul", ["x", "w"], ["y"])], [("w", np.zeros((4, 5), np.float32))])
model("gemm_bad", [h.make_node("Gemm", ["x", "w"], ["y"], transB=1)], [("w", np.zeros((4, 5), np.float32))])
c4 = (1, 2, 5, 5)
model("conv_stride0", [h.make_node("Conv", ["x", "w"], ["y"], strides=[0, 0])], [("w", np.zeros((2, 2, 3, 3), np.float32))], c4)
model("conv_dil0", [h.make_node("Conv", ["x", "w"], ["y"], dilations=[0, 0])], [("w", np.zeros((2, 2, 3, 3), np.float32))], c4)
model("conv_kernel_big", [h.make_node("Conv", ["x", "w"], ["y"])], [("w", np.zeros((2, 2, 9, 9), np.float32))], c4)
model("conv_group_bad", [h.make_node("Conv", ["x", "w"], ["y"], group=3)], [("w", np.zeros((3, 1, 3, 3), np.float32))], c4)
model("conv_group0", [h.make_node("Conv", ["x", "w"], ["y"], group=0)], [("w", np.zeros((2, 2, 3, 3), np.float32))], c4)
model("conv_pads_neg", [h.make_node("Conv", ["x", "w"], ["y"], pads=[-3, -3, -3, -3])], [("w", np.zeros((2, 2, 3, 3), np.float32))], c4)
model("conv_pads_huge", [h.make_node("Conv", ["x", "w"], ["y"], pads=[1<<40, 1<<40, 1<<40, 1<<40])], [("w", np.zeros((2, 2, 3, 3), np.float32))], c4)
model("conv_bias_bad", [h.make_node("Conv", ["x", "w", "b"], ["y"])], [("w", np.zeros((2, 2, 3, 3), np.float32)), ("b", f32(1, 2, 3))], c4)
model("conv_w_rank", [h.make_node("Conv", ["x", "w"], ["y"])], [("w", np.zeros((2, 2), np.float32))], c4)
model("maxpool_k0", [h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[0, 0])], [], c4)
model("maxpool_stride0", [h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[0, 0])], [], c4)
model("avgpool_big", [h.make_node("AveragePool", ["x"], ["y"], kernel_shape=[9, 9])], [], c4)
model("convT_stride0", [h.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[0, 0])], [("w", np.zeros((2, 2, 3, 3), np.float32))], c4)
model("convT_outpad_huge", [h.make_node("ConvTranspose", ["x", "w"], ["y"], output_padding=[1<<40, 1<<40], strides=[2,2])], [("w", np.zeros((2, 2, 3, 3), np.float32))], c4)
model("bn_bad", [h.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], [("s", f32(1)), ("b", f32(1)), ("m", f32(1)), ("v", f32(1))], c4)
model("resize_sizes_zero", [h.make_node("Resize", ["x", "", "", "sz"], ["y"])], [("sz", i64(1, 2, 0, 0))], c4)
model("depthtospace_bad", [h.make_node("DepthToSpace", ["x"], ["y"], blocksize=3)], [], c4)
model("depthtospace_0", [h.make_node("DepthToSpace", ["x"], ["y"], blocksize=0)], [], c4)
model("lrn_size0", [h.make_node("LRN", ["x"], ["y"], size=0)], [], c4)
model("instnorm_bad", [h.make_node("InstanceNormalization", ["x", "s", "b"], ["y"])], [("s", f32(1)), ("b", f32(1))], c4)
model("cast_string", [h.make_node("Cast", ["x"], ["y"], to=8)], [])
model("cumsum_axis_oob", [h.make_node("CumSum", ["x", "a"], ["y"])], [("a", i64(5))])
model("gathernd_oob", [h.make_node("GatherND", ["x", "i"], ["y"])], [("i", i64(9, 9).reshape(1, 2))])
model("scatter_oob", [h.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=1)], [("i", i64(9, 0, 0, 0, 0, 0).reshape(2, 3)), ("u", np.zeros((2, 3), np.float32))])
model("einsum_bad", [h.make_node("Einsum", ["x"], ["y"], equation="ij->k")], [])
model("argmax_axis_oob", [h.make_node("ArgMax", ["x"], ["y"], axis=5)], [])
model("clip_min_gt_max", [h.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("lo", f32(5)), ("hi", f32(-5))])
model("mod_int_zero", [h.make_node("Cast", ["x"], ["xi"], to=7), h.make_node("Mod", ["xi", "z"], ["m"]), h.make_node("Cast", ["m"], ["y"], to=1)], [("z", i64(0))])
model("div_int_zero", [h.make_node("Cast", ["x"], ["xi"], to=6), h.make_node("Div", ["xi", "z"], ["m"]), h.make_node("Cast", ["m"], ["y"], to=1)], [("z", np.array(0, np.int32))])
model("div_int_min", [h.make_node("Cast", ["x"], ["xi"], to=6), h.make_node("Div", ["xi", "z"], ["m"]), h.make_node("Cast", ["m"], ["y"], to=1)], [("z", np.array(-1, np.int32))])
model("cycle", [h.make_node("Add", ["x", "b"], ["a"]), h.make_node("Add", ["a", "x"], ["b"]), h.make_node("Relu", ["a"], ["y"])], [])
model("undefined_input", [h.make_node("Add", ["x", "nothere"], ["y"])], [])
model("dup_output", [h.make_node("Relu", ["x"], ["y"]), h.make_node("Relu", ["x"], ["y"])], [])
model("lstm", [h.make_node("LSTM", ["x"], ["y"], hidden_size=2)], [])
model("gelu_ok", [h.make_node("Relu", ["x"], ["y"])], [])
def intop(name, op, to, const, x_to=None):
    model(name, [h.make_node("Cast", ["x"], ["xi"], to=to), h.make_node(op, ["xi", "z"], ["m"]), h.make_node("Cast", ["m"], ["y"], to=1)], [("z", const)])
intop("div_int64_min", "Div", 7, np.array(-1, np.int64))
intop("mod_int_min", "Mod", 6, np.array(-1, np.int32))
intop("pow_int_huge", "Pow", 7, np.array(4000000000000000000, np.int64))
intop("mul_int_overflow", "Mul", 6, np.array(2147483647, np.int32))
intop("add_int_overflow", "Add", 6, np.array(2147483647, np.int32))
model("neg_int_min", [h.make_node("Cast", ["x"], ["xi"], to=6), h.make_node("Neg", ["xi"], ["m"]), h.make_node("Cast", ["m"], ["y"], to=1)], [])
model("range_int_overflow", [h.make_node("Range", ["a", "b", "c"], ["r"]), h.make_node("Cast", ["r"], ["rf"], to=1), h.make_node("Add", ["x", "rf"], ["y"])], [("a", i64(-(1<<63))), ("b", i64((1<<63)-1)), ("c", i64(1<<62))])
model("range_int_ok", [h.make_node("Range", ["a", "b", "c"], ["r"]), h.make_node("Cast", ["r"], ["rf"], to=1), h.make_node("Add", ["x", "rf"], ["y"])], [("a", i64(5)), ("b", i64(-1)), ("c", i64(-2))])
model("range_f_ok", [h.make_node("Range", ["a", "b", "c"], ["r"]), h.make_node("Add", ["x", "r"], ["y"])], [("a", f32(0.5)), ("b", f32(2)), ("c", f32(0.5))])

# QuantizeLinear / DequantizeLinear with scales and zero points from the file.
def qdq(name, scale, zp, zp_type=np.uint8, block=None, axis=None):
    kw = {}
    if axis is not None: kw["axis"] = axis
    model(name, [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **kw), h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **kw)], [("s", np.array(scale, np.float32)), ("z", np.array(zp, zp_type))])
qdq("qdq_scale0", 0.0, 0)
qdq("qdq_scale_nan", np.nan, 0)
qdq("qdq_scale_neg", -1.0, 0)
qdq("qdq_scale_inf", np.inf, 0)
qdq("qdq_scale_tiny", 1e-45, 128)
qdq("qdq_axis_oob", [0.1, 0.1, 0.1], [0, 0, 0], axis=5)
qdq("qdq_zp_int32", 0.1, 2**31 - 1, np.int32)
qdq("qdq_zp_count", [0.1, 0.1, 0.1], [0, 0], axis=1)
model("dq_int32_big", [h.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]), h.make_node("Add", ["x", "d"], ["y"])], [("q", np.array([2**31-1, -2**31, 5], np.int32)), ("s", np.array(1e30, np.float32)), ("z", np.array(-2**31, np.int32))])

print("hostile models written to", out_dir)
