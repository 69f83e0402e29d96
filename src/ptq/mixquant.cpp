#include <quantsim/ptq/mixquant.hpp>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include <quantsim/core/error.hpp>
#include <quantsim/quant/fake_quant.hpp>

namespace quantsim {

namespace {

bool searchable(const quantizer& q) {
    return q.kind == quantizer_kind::param && q.param_kind == "weight" && q.enabled && !q.frozen &&
           !q.is_derived_bias();
}

std::vector<int> checked_candidates(const mixquant_options& o) {
    if (!std::isfinite(o.min_sqnr_db)) QUANTSIM_THROW(invalid_argument, "mixquant: min_sqnr_db must be finite");
    if (o.bitwidths.empty()) QUANTSIM_THROW(invalid_argument, "mixquant: no candidate bit widths");
    std::vector<int> b = o.bitwidths;
    for (int v : b)
        if (v < 2 || v > 16) QUANTSIM_THROW(invalid_argument, "mixquant: candidate bit width ", v, " is outside 2..16");
    std::sort(b.begin(), b.end());
    b.erase(std::unique(b.begin(), b.end()), b.end());
    return b;
}

// SQNR in dB of `w` quantized with `p`: +inf when exact (including an all-zero weight).
double weight_sqnr_db(const tensor& w, const quant_params& p, const quant_options& o) {
    const tensor q = fake_quant(w, p, o);
    const float* a = w.f32();
    const float* b = q.f32();
    double sig = 0, err = 0;
    for (std::int64_t i = 0; i < w.numel(); ++i) {
        sig += static_cast<double>(a[i]) * a[i];
        const double d = static_cast<double>(a[i]) - b[i];
        err += d * d;
    }
    if (err == 0) return std::numeric_limits<double>::infinity();
    if (sig == 0) return -std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(sig / err);
}

}  // namespace

std::int64_t mixquant_result::weight_bits() const {
    std::int64_t bits = 0;
    for (const auto& l : layers) bits += l.elements * l.bitwidth;
    return bits;
}

double mixquant_result::mean_bitwidth() const {
    std::int64_t n = 0;
    for (const auto& l : layers) n += l.elements;
    return n ? static_cast<double>(weight_bits()) / static_cast<double>(n) : 0.0;
}

std::string mixquant_result::table() const {
    std::ostringstream os;
    os << "MixQuant: each layer's weight SQNR >= " << min_sqnr_db << " dB\n";
    os << std::left << std::setw(40) << "weight" << std::setw(10) << "op" << std::right << std::setw(9) << "elements";
    for (int b : bitwidths) os << std::setw(8) << ("W" + std::to_string(b));
    os << std::setw(7) << "bits" << "\n";
    os << std::fixed << std::setprecision(1);
    for (const auto& l : layers) {
        os << std::left << std::setw(40) << l.weight << std::setw(10) << l.op_type << std::right << std::setw(9)
           << l.elements;
        for (double s : l.sqnr_db) os << std::setw(8) << s;
        os << std::setw(7) << l.bitwidth << "\n";
    }
    os << std::setprecision(2) << "mean bit width " << mean_bitwidth() << ", weight size "
       << static_cast<double>(weight_bits()) / 8.0 / 1024.0 << " KiB\n";
    return os.str();
}

mixquant_result mixquant_search(quant_sim& sim, const mixquant_options& options) {
    mixquant_result r;
    r.bitwidths = checked_candidates(options);
    r.min_sqnr_db = options.min_sqnr_db;

    auto& qs = sim.quantizers();
    struct saved {
        std::size_t index;
        int bitwidth;
        std::optional<quant_params> params;
    };
    std::vector<saved> keep;
    for (std::size_t i = 0; i < qs.size(); ++i)
        if (searchable(qs[i])) {
            keep.push_back({i, qs[i].spec.bitwidth, qs[i].params});
            mixquant_layer l;
            l.weight = qs[i].name;
            l.op_type = qs[i].op_type;
            l.elements = sim.model().params.at(qs[i].name).numel();
            l.original_bitwidth = qs[i].spec.bitwidth;
            r.layers.push_back(std::move(l));
        }
    // Encodings at each candidate come from the sim itself, so the search sees exactly the quantizer that will be used
    // (range method, granularity, scheme); the originals are put back whatever happens.
    try {
        for (int b : r.bitwidths) {
            for (const auto& s : keep) {
                qs[s.index].spec.bitwidth = b;
                qs[s.index].params.reset();
            }
            sim.compute_param_encodings();
            for (std::size_t k = 0; k < keep.size(); ++k) {
                const quantizer& q = qs[keep[k].index];
                const tensor& w = sim.model().params.at(q.name);
                r.layers[k].sqnr_db.push_back(q.params ? weight_sqnr_db(w, *q.params, q.options)
                                                       : std::numeric_limits<double>::infinity());
            }
        }
    } catch (...) {
        for (const auto& s : keep) {
            qs[s.index].spec.bitwidth = s.bitwidth;
            qs[s.index].params = s.params;
        }
        throw;
    }
    for (const auto& s : keep) {
        qs[s.index].spec.bitwidth = s.bitwidth;
        qs[s.index].params = s.params;
    }
    for (auto& l : r.layers) {
        l.bitwidth = r.bitwidths.back();
        for (std::size_t c = 0; c < r.bitwidths.size(); ++c)
            if (l.sqnr_db[c] >= options.min_sqnr_db) {
                l.bitwidth = r.bitwidths[c];
                break;
            }
    }
    return r;
}

void apply_mixquant(quant_sim& sim, const mixquant_result& result) {
    for (const auto& l : result.layers)
        if (!sim.find(l.weight))
            QUANTSIM_THROW(invalid_argument, "apply_mixquant: the sim has no quantizer for weight '", l.weight, "'");
    for (const auto& l : result.layers) sim.set_bitwidth(l.weight, l.bitwidth);
    sim.compute_param_encodings();
}

}  // namespace quantsim
