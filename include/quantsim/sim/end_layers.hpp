// The model's first and last layers, which low-bit recipes keep at a higher bit width.
//
// The LSQ paper, the oscillation paper and most 4-bit results quantize the first layer's weights and input and the
// last layer's weights and output at 8 bits: the input image and the logits carry far more information per value
// than the features in between, and these layers hold a tiny share of the weights.
#pragma once

#include <string>
#include <vector>

#include <quantsim/sim/quantsim.hpp>

namespace quantsim {

struct end_layer_quantizers {
    std::vector<std::string> first_layers;  ///< weighted nodes (Conv, ConvTranspose, Gemm, MatMul) fed by a model input
    std::vector<std::string> last_layers;   ///< weighted nodes with a model output downstream and no weighted node between
    /// Weight quantizers of those layers, and the activation quantizers from the model inputs to the first layers'
    /// inputs and from the last layers' outputs to the model outputs.
    std::vector<std::string> params;
    std::vector<std::string> activations;
};

/// Finds the end layers of `sim`'s model and their quantizers (only quantizers that exist and are enabled).
end_layer_quantizers find_end_layers(const quant_sim& sim);

/// Sets the bit width of every quantizer find_end_layers() names (their encodings are then recomputed by
/// compute_encodings). Returns what it found.
end_layer_quantizers set_end_layers_bitwidth(quant_sim& sim, int param_bitwidth, int activation_bitwidth);

}  // namespace quantsim
