// Activations that an exporter spelled out in elementary ops, recognized as the one op they compute.
//
// ONNX before opset 14 has no HardSwish, so exporters write x * relu6(x + 3) / 6 as Add -> Clip -> Mul -> Div
// (PaddleOCR's models, torch.onnx at opset < 14). A runtime with a HardSwish kernel (QNN, TFLite, OpenVINO after its
// HSwish fusion) quantizes only the result; quantizing each of the four outputs is a different, much coarser model at
// low bit widths. QuantSim uses these matches to place quantizers as such a runtime does (docs/quantsim.md).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <quantsim/ir/graph.hpp>

namespace quantsim {

struct composite_activation {
    std::string op_type;             ///< "HardSwish" or "HardSigmoid" (alpha 1/6, beta 0.5)
    std::vector<std::size_t> nodes;  ///< the elementary nodes, in graph order
    std::string input;               ///< x
    std::string output;              ///< the last node's output: the composite's result
};

/// Every decomposed hard-swish and hard-sigmoid in `g`, with no node in two matches. Recognized forms (constants are
/// float32 scalar parameters, within 1e-6 relative; Add and Mul operands in either order):
///   HardSwish:   Add(x, 3) -> Clip(0, 6) -> Mul(x, .) -> Div(., 6) | Mul(., 1/6)
///                Add(x, 3) -> Clip(0, 6) -> Div(., 6) | Mul(., 1/6) -> Mul(x, .)
///                HardSigmoid(x; alpha 1/6, beta 0.5) -> Mul(x, .)
///   HardSigmoid: Add(x, 3) -> Clip(0, 6) -> Div(., 6) | Mul(., 1/6)
/// Every inner value must have exactly one reader (the next node) and not be a graph output, so treating the chain
/// as one op changes no value anything else observes.
std::vector<composite_activation> match_decomposed_activations(const graph& g);

/// A copy of `g` with each match replaced by one node of its op type reading `input` and writing `output` (the
/// HardSigmoid with alpha 1/6 and beta 0.5). Names of every other value and node are kept.
graph fuse_decomposed_activations(const graph& g);

}  // namespace quantsim
