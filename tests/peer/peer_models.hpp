// The real models the peer tests run, with their real inputs (the committed fixtures), by name. Parameterized
// peer tests iterate over peer_model_names().
#pragma once

#include <string>
#include <vector>

#include "peer_harness.hpp"

namespace quantsim::peer {

struct peer_model {
    std::string name;
    fs::path path;
    tensor input;  ///< float32 NCHW model input made from the fixtures
    /// Batch size to split the input into when checking that a model runs with a batch other than its first.
    std::int64_t sub_batch = 0;
};

inline std::vector<std::string> peer_model_names() {
    return {"paddle_cls", "paddle_rec", "paddle_det", "resnet18", "mobilenet_v2"};
}

/// Path and input of a model (the input comes from the committed fixtures, so it exists even when the model does not).
inline peer_model load_peer_model(const std::string& name) {
    peer_model m;
    m.name = name;
    if (name == "paddle_cls") {
        m.path = paddle_model(cls_model_file);
        m.input = lines_to_input(load_fixture("cls_u8.npy"), load_fixture("cls_width.npy"));
        m.sub_batch = 8;
    } else if (name == "paddle_rec") {
        m.path = paddle_model(rec_model_file);
        m.input = lines_to_input(load_fixture("rec_u8.npy"), load_fixture("rec_width.npy"));
        m.sub_batch = 3;
    } else if (name == "paddle_det") {
        m.path = paddle_model(det_model_file);
        m.input = page_to_input(load_fixture("det_u8.npy"));
    } else if (name == "resnet18" || name == "mobilenet_v2") {
        m.path = torchvision_model(name);
        m.input = scene_to_input(load_fixture("scene_u8.npy"));
        m.sub_batch = 1;
    } else {
        throw std::invalid_argument("unknown peer model " + name);
    }
    return m;
}

}  // namespace quantsim::peer
