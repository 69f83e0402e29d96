// The integer executor: lowers a quant_sim's model into integer kernels (QLinear-like, with the target runtime's
// arithmetic) and float islands (dequantize -> float op -> quantize, as the runtime runs ops it has no integer
// kernel for). docs/integer.md describes the lowering rules.
#include <quantsim/sim/integer_executor.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>
#include <unordered_map>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/ir/pattern.hpp>
#include <quantsim/quant/fake_quant.hpp>
#include <quantsim/quant/quantize.hpp>
#include <quantsim/sim/detail/integer_kernels.hpp>
#include <quantsim/sim/detail/integer_simd.hpp>
#include <quantsim/sim/integer_arith.hpp>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
// GCC 12 warns about _mm512_undefined_*() inside the intrinsics (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define QUANTSIM_INT_AVX512 1
#else
#define QUANTSIM_INT_AVX512 0
#endif

namespace quantsim {

std::string_view to_string(integer_profile p) noexcept {
    return p == integer_profile::tflite ? "tflite" : "onnxruntime";
}

integer_profile parse_integer_profile(std::string_view name) {
    if (name == "onnxruntime" || name == "ort") return integer_profile::onnxruntime;
    if (name == "tflite") return integer_profile::tflite;
    QUANTSIM_THROW(invalid_argument, "unknown integer profile '", name, "': use onnxruntime or tflite");
}

namespace {

// A quantized activation's grid (per tensor, at most 8 bits, stored as uint8 or int8).
struct qgrid {
    float scale = 1;
    std::int32_t zp = 0;
    std::int32_t qmin = 0, qmax = 255;
    bool is_signed = false;
    dtype storage() const noexcept { return is_signed ? dtype::int8 : dtype::uint8; }
};

enum class step_kind { conv, matmul, add, mul, gap, softmax, float_op };

// A float island run as lookup tables (integer_options::island_tables): the island is a function from the byte of
// its one quantized input (and the channel) to the byte of each quantized output. Filled at the first run.
struct island_lut {
    bool eligible = false;      // structurally elementwise in one quantized input, per channel at most
    bool failed = false;        // the island did not behave as a function of the code: it runs as floats
    std::int64_t rank = -1;     // the input's rank recorded in the model (-1: unknown); another rank runs the island
    std::int64_t channels = 0;  // channel count the tables were filled for (0: not yet)
    bool per_channel = false;   // false: one table per output for all channels
    std::vector<std::vector<std::uint8_t>> tables;  // per output: [channels or 1][256], raw byte -> raw byte
};

struct step {
    step_kind kind = step_kind::float_op;
    std::string node;
    std::string label;
    std::vector<std::string> inputs;   // integer steps: quantized inputs; float steps: non-parameter inputs
    std::vector<std::string> outputs;
    detail::qconv_layer conv;
    detail::qmatmul_layer matmul;
    std::int64_t matmul_k = 0;
    ort_add_params ort_add;
    tflite_add_params tfl_add;
    float mul_multiplier = 1;
    fixed_multiplier tfl_multiplier;
    std::int64_t softmax_axis = -1;
    std::shared_ptr<executor> island;
    island_lut lut;
    std::size_t plan_at = 0, plan_len = 0;  // float islands: their nodes' entries in the plan
};

// ---- quantize / dequantize of whole tensors -------------------------------------------------------------------

void quantize_tensor(const tensor& x, const qgrid& g, bool tflite, tensor& q, detail::tensor_pool& pool) {
    if (x.type() != dtype::float32) QUANTSIM_THROW(invalid_argument, "integer executor: a quantized value holds ", name_of(x.type()), " data");
    q = pool.take(x.shape(), g.storage());
    const float* src = x.f32();
    const std::int64_t n = x.numel();
    detail::parallel_range(n, 1 << 14, [&](std::int64_t b, std::int64_t e) {
        std::int64_t i = b;
#if QUANTSIM_INT_AVX512
        if (!tflite) {
            const __m512 vs = _mm512_set1_ps(g.scale);
            const __m512 lo = _mm512_set1_ps(static_cast<float>(g.qmin - g.zp));
            const __m512 hi = _mm512_set1_ps(static_cast<float>(g.qmax - g.zp));
            const __m512i vz = _mm512_set1_epi32(g.zp);
            for (; i + 16 <= e; i += 16) {
                __m512 f = _mm512_div_ps(_mm512_loadu_ps(src + i), vs);
                f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);  // MAXPS: NaN takes the lower bound, as MLAS
                const __m128i r = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), vz));
                _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<std::uint8_t*>(q.raw()) + i), r);
            }
        }
#endif
        for (; i < e; ++i) {
            const std::int32_t v = tflite ? tflite_quantize(src[i], g.scale, g.zp, g.qmin, g.qmax)
                                          : ort_quantize(src[i], g.scale, g.zp, g.qmin, g.qmax);
            if (g.is_signed)
                q.data<std::int8_t>()[i] = static_cast<std::int8_t>(v);
            else
                q.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(v);
        }
    });
}

tensor dequantize_tensor(const tensor& q, const qgrid& g, detail::tensor_pool& pool) {
    tensor y = pool.take(q.shape(), dtype::float32);
    float* dst = y.f32();
    const std::int64_t n = q.numel();
    // A 256-entry table holds float(q - zp) * scale for every byte: the same float product, one lookup.
    float table[256];
    for (int i = 0; i < 256; ++i) {
        const std::int32_t v = g.is_signed ? static_cast<std::int8_t>(i) : i;
        table[i] = ort_dequantize(v, g.scale, g.zp);
    }
    const auto* src = static_cast<const std::uint8_t*>(q.raw());
    detail::parallel_range(n, 1 << 14, [&](std::int64_t b, std::int64_t e) {
        std::int64_t i = b;
#if QUANTSIM_INT_AVX512
        // The same float(q - zp) * scale, 16 at a time.
        const __m512i vz = _mm512_set1_epi32(g.zp);
        const __m512 vs = _mm512_set1_ps(g.scale);
        for (; i + 16 <= e; i += 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
            const __m512i w = g.is_signed ? _mm512_cvtepi8_epi32(v) : _mm512_cvtepu8_epi32(v);
            _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(w, vz)), vs));
        }
#endif
        for (; i < e; ++i) dst[i] = table[src[i]];
    });
    return y;
}

// y[i] = table[x[i]] on raw bytes (an island's lookup table). With AVX-512 VBMI the 256-byte table lives in four
// registers: two vpermi2b look up the low and high halves, the index's top bit picks between them.
void lut_span(const std::uint8_t* x, std::uint8_t* y, std::int64_t n, const std::uint8_t* table, bool vectorized) {
    std::int64_t i = 0;
#if QUANTSIM_INT_AVX512 && defined(__AVX512VBMI__)
    if (vectorized && n > 0) {
        const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
        const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
        auto look = [&](__m512i v) {
            const __m512i lo = _mm512_permutex2var_epi8(t0, v, t1);
            const __m512i hi = _mm512_permutex2var_epi8(t2, v, t3);
            return _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi);
        };
        for (; i + 64 <= n; i += 64) _mm512_storeu_si512(y + i, look(_mm512_loadu_si512(x + i)));
        if (i < n) {
            const __mmask64 m = (std::uint64_t{1} << (n - i)) - 1;
            _mm512_mask_storeu_epi8(y + i, m, look(_mm512_maskz_loadu_epi8(m, x + i)));
            i = n;
        }
    }
#endif
    (void)vectorized;
    for (; i < n; ++i) y[i] = table[x[i]];
}

inline std::int32_t qload(const tensor& t, bool is_signed, std::int64_t i) {
    return is_signed ? t.data<std::int8_t>()[i] : t.data<std::uint8_t>()[i];
}
inline void qstore(tensor& t, bool is_signed, std::int64_t i, std::int32_t v) {
    if (is_signed)
        t.data<std::int8_t>()[i] = static_cast<std::int8_t>(v);
    else
        t.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(v);
}

// Numpy broadcasting of two shapes; throws shape_error naming the node.
shape_t broadcast_shape(const shape_t& a, const shape_t& b, const std::string& where) {
    const std::size_t r = std::max(a.size(), b.size());
    shape_t out(r);
    for (std::size_t i = 0; i < r; ++i) {
        const std::int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
        const std::int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
        if (da != db && da != 1 && db != 1)
            QUANTSIM_THROW(shape_error, where, ": shapes ", to_string(a), " and ", to_string(b), " do not broadcast");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// Element strides of `s` inside the broadcast shape `out` (0 along broadcast axes).
std::vector<std::int64_t> broadcast_strides(const shape_t& s, const shape_t& out) {
    std::vector<std::int64_t> st(out.size(), 0);
    std::int64_t acc = 1;
    for (std::size_t i = s.size(); i-- > 0;) {
        const std::size_t o = i + (out.size() - s.size());
        st[o] = s[i] == 1 ? 0 : acc;
        acc *= s[i];
    }
    return st;
}

// One span of a quantized Add/Mul: n outputs, a and b advancing by sta / stb (0 = broadcast scalar).
template <class T>
void binary_span(const step& s, const T* a, std::int64_t sta, std::int32_t zpa, const T* b, std::int64_t stb,
                 std::int32_t zpb, T* c, std::int64_t n, const qgrid& cg, bool tfl, bool vectorized) {
    const bool is_add = s.kind == step_kind::add;
    // MLAS sees a broadcast operand as a scalar over the span (a different order of float operations for Add).
    const bool a_scalar = sta == 0 && n > 1, b_scalar = stb == 0 && n > 1;
    std::int64_t i = 0;
#if QUANTSIM_INT_AVX512
    if (vectorized && !tfl && sta == 1 && (stb == 1 || stb == 0)) {
        const __m512i lo = _mm512_set1_epi32(cg.qmin), hi = _mm512_set1_epi32(cg.qmax);
        auto load = [](const T* p) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            return std::is_signed_v<T> ? _mm512_cvtepi8_epi32(v) : _mm512_cvtepu8_epi32(v);
        };
        if (is_add) {
            const __m512 ra = _mm512_set1_ps(s.ort_add.ratio_a), rb = _mm512_set1_ps(s.ort_add.ratio_b);
            const float fixed = b_scalar ? s.ort_add.fixed + static_cast<float>(b[0]) * s.ort_add.ratio_b : s.ort_add.fixed;
            const __m512 vf = _mm512_set1_ps(fixed);
            for (; i + 16 <= n; i += 16) {
                const __m512 fa = _mm512_cvtepi32_ps(load(a + i));
                const __m512 inner = b_scalar ? vf : _mm512_fmadd_ps(_mm512_cvtepi32_ps(load(b + i)), rb, vf);
                __m512i r = _mm512_cvtps_epi32(_mm512_fmadd_ps(fa, ra, inner));
                r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
                _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i), _mm512_cvtepi32_epi8(r));
            }
        } else {
            const __m512 vm = _mm512_set1_ps(s.mul_multiplier), vz = _mm512_set1_ps(static_cast<float>(cg.zp));
            const __m512i za = _mm512_set1_epi32(zpa), zb = _mm512_set1_epi32(zpb);
            const __m512i bconst = _mm512_set1_epi32(static_cast<std::int32_t>(b[0]) - zpb);
            for (; i + 16 <= n; i += 16) {
                const __m512i va = _mm512_sub_epi32(load(a + i), za);
                const __m512i vb = stb == 0 ? bconst : _mm512_sub_epi32(load(b + i), zb);
                const __m512 f = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_mullo_epi32(va, vb)), vm), vz);
                __m512i r = _mm512_cvtps_epi32(f);
                r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
                _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i), _mm512_cvtepi32_epi8(r));
            }
        }
    }
    // TFLite: the fixed-point multiplies of tflite_add / tflite_mul, 16 lanes at a time.
    if (vectorized && tfl && sta == 1 && (stb == 1 || stb == 0)) {
        constexpr std::int32_t int_min = std::numeric_limits<std::int32_t>::min();
        const bool ok = is_add ? s.tfl_add.in_a.multiplier != int_min && s.tfl_add.in_b.multiplier != int_min &&
                                     s.tfl_add.out.multiplier != int_min
                               : s.tfl_multiplier.multiplier != int_min;
        auto load = [](const T* p) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            return std::is_signed_v<T> ? _mm512_cvtepi8_epi32(v) : _mm512_cvtepu8_epi32(v);
        };
        const __m512i za = _mm512_set1_epi32(is_add ? s.tfl_add.zp_a : zpa);
        const __m512i zb = _mm512_set1_epi32(is_add ? s.tfl_add.zp_b : zpb);
        const __m512i bconst = _mm512_sub_epi32(_mm512_set1_epi32(static_cast<std::int32_t>(b[0])), zb);
        const __m512i lo = _mm512_set1_epi32(is_add ? s.tfl_add.qmin : cg.qmin);
        const __m512i hi = _mm512_set1_epi32(is_add ? s.tfl_add.qmax : cg.qmax);
        const __m512i zc = _mm512_set1_epi32(is_add ? s.tfl_add.zp_c : cg.zp);
        const __m512i shift = _mm512_set1_epi32(s.tfl_add.left_shift);
        for (; ok && i + 16 <= n; i += 16) {
            const __m512i va = _mm512_sub_epi32(load(a + i), za);
            const __m512i vb = stb == 0 ? bconst : _mm512_sub_epi32(load(b + i), zb);
            __m512i r;
            if (is_add) {
                const __m512i sa = detail::tflite_multiply_epi32(_mm512_sllv_epi32(va, shift), s.tfl_add.in_a);
                const __m512i sb = detail::tflite_multiply_epi32(_mm512_sllv_epi32(vb, shift), s.tfl_add.in_b);
                r = detail::tflite_multiply_epi32(_mm512_add_epi32(sa, sb), s.tfl_add.out);
            } else {
                r = detail::tflite_multiply_epi32(_mm512_mullo_epi32(va, vb), s.tfl_multiplier);
            }
            r = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(r, zc), lo), hi);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i), _mm512_cvtepi32_epi8(r));
        }
    }
#endif
    (void)vectorized;
    for (; i < n; ++i) {
        const std::int32_t av = a[i * sta], bv = b[i * stb];
        std::int32_t r;
        if (is_add) {
            if (tfl)
                r = tflite_add(av, bv, s.tfl_add);
            else if (a_scalar)
                r = ort_add_scalar_a(av, bv, s.ort_add);
            else if (b_scalar)
                r = ort_add_scalar_b(av, bv, s.ort_add);
            else
                r = ort_add(av, bv, s.ort_add);
        } else {
            r = tfl ? tflite_mul(av, zpa, bv, zpb, s.tfl_multiplier, cg.zp, cg.qmin, cg.qmax)
                    : ort_mul(av, zpa, bv, zpb, s.mul_multiplier, cg.zp, cg.qmin, cg.qmax);
        }
        c[i] = static_cast<T>(r);
    }
}

// A quantized Add/Mul with numpy broadcasting, as spans over the innermost output axis (one flat span when the
// shapes are equal).
void binary_op(const step& s, const tensor& a, const qgrid& ag, const tensor& b, const qgrid& bg, tensor& c,
               const qgrid& cg, bool tfl, bool vectorized) {
    const shape_t& os = c.shape();
    auto run = [&](auto tag) {
        using T = decltype(tag);
        const T* pa = static_cast<const T*>(a.raw());
        const T* pb = static_cast<const T*>(b.raw());
        T* pc = static_cast<T*>(c.raw());
        if (a.shape() == b.shape()) {
            detail::parallel_range(c.numel(), 1 << 14, [&](std::int64_t lo, std::int64_t hi) {
                binary_span<T>(s, pa + lo, 1, ag.zp, pb + lo, 1, bg.zp, pc + lo, hi - lo, cg, tfl, vectorized);
            });
            return;
        }
        const auto sa = broadcast_strides(a.shape(), os), sb = broadcast_strides(b.shape(), os);
        const std::int64_t inner = os.empty() ? 1 : os.back();
        const std::int64_t outer = inner ? c.numel() / inner : 0;
        const std::int64_t sta = sa.empty() ? 0 : sa.back(), stb = sb.empty() ? 0 : sb.back();
        detail::parallel_range(outer, std::max<std::int64_t>(1, 8192 / std::max<std::int64_t>(1, inner)),
                       [&](std::int64_t ob, std::int64_t oe) {
            for (std::int64_t o = ob; o < oe; ++o) {
                std::int64_t rem = o, offa = 0, offb = 0;
                for (std::size_t d = os.size() - 1; d-- > 0;) {
                    const std::int64_t idx = rem % os[d];
                    rem /= os[d];
                    offa += idx * sa[d];
                    offb += idx * sb[d];
                }
                binary_span<T>(s, pa + offa, sta, ag.zp, pb + offb, stb, bg.zp, pc + o * inner, inner, cg, tfl,
                               vectorized);
            }
        });
    };
    if (cg.is_signed)
        run(std::int8_t{});
    else
        run(std::uint8_t{});
}

}  // namespace

struct integer_executor::impl {
    integer_options opt;
    graph model;
    std::map<std::string, qgrid, std::less<>> grids;  // quantized activations
    std::vector<step> steps;
    std::vector<integer_step_info> plan;
    std::vector<std::string> input_names;
    std::vector<std::vector<std::string>> release_after;  // per step: values no later step reads
    // Buffers of the previous run, reused for values of the same size (no page faults after the first run).
    detail::tensor_pool pool;

    bool tflite() const noexcept { return opt.profile == integer_profile::tflite; }

    void build(const quant_sim& sim);
    // Fills s.lut for input x (its shape, its channel count) by running the island on every code; sets
    // s.lut.failed when the island is not a function of the code and channel.
    void fill_lut(step& s, const tensor& x);
    // Computes the island's outputs from x with the filled tables.
    std::vector<tensor> run_lut(const step& s, const tensor& x);
    std::map<std::string, tensor> execute(const std::map<std::string, tensor>& feeds,
                                          const std::vector<std::string>& fetch, bool raw);
};

namespace {

struct param_q {
    std::vector<std::int32_t> values;  // quantized integers, row-major
    quant_params params;
    shape_t shape;
};

std::optional<param_q> quantized_param(const quant_sim& sim, const graph& g, const std::string& name) {
    const quantizer* q = sim.find(name);
    if (!q || q->kind != quantizer_kind::param) return std::nullopt;
    const auto p = sim.effective_params(name);
    if (!p) return std::nullopt;
    auto it = g.params.find(name);
    if (it == g.params.end() || it->second.type() != dtype::float32) return std::nullopt;
    param_q r;
    r.params = *p;
    r.shape = it->second.shape();
    const tensor t = quantize(it->second, *p, dtype::int32, q->options);
    r.values.assign(t.data<std::int32_t>(), t.data<std::int32_t>() + t.numel());
    return r;
}

// True when node n computes, at every position, a function of its inputs' values at that position and of at most
// one constant per channel (axis 1 of the island input, whose rank is `rank`, -1 when unknown): what makes an island
// a function of its input code and channel. Parameters may broadcast along axis 1 only.
bool elementwise_per_channel(const graph& g, const node& n, std::int64_t rank) {
    static const std::set<std::string, std::less<>> unary = {
        "Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "Celu",
        "Identity", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Floor", "Ceil", "Softplus",
        "Softsign", "Round", "Sign", "ThresholdedRelu"};
    static const std::set<std::string, std::less<>> binary = {"Add", "Sub", "Mul", "Div", "Min", "Max", "Pow",
                                                               "PRelu"};
    if (n.outputs.size() != 1 || !n.domain.empty()) return false;
    auto param_ok = [&](const tensor& p, bool channel_vector) {
        if (channel_vector) return rank < 0 || rank >= 2;  // BatchNormalization's [C] vectors apply on axis 1
        if (p.numel() == 1) return rank < 0 || p.rank() <= rank;
        if (rank < 0 || p.rank() > rank) return false;
        for (int i = 0; i < p.rank(); ++i)
            if (p.dim(i) != 1 && rank - p.rank() + i != 1) return false;
        return true;
    };
    const bool bn = n.op_type == "BatchNormalization";
    if (bn) {
        if (n.attr_int("training_mode", 0) != 0 || n.inputs.size() != 5) return false;
    } else if (unary.count(n.op_type)) {
        if (n.op_type == "Clip" ? n.inputs.size() > 3 : n.inputs.size() != 1) return false;
    } else if (binary.count(n.op_type)) {
        if (n.inputs.size() != 2) return false;
    } else {
        return false;
    }
    for (std::size_t i = 0; i < n.inputs.size(); ++i) {
        if (n.inputs[i].empty()) continue;
        const tensor* p = param_value(g, n.inputs[i]);
        const bool must_be_param = (bn && i > 0) || (n.op_type == "Clip" && i > 0);
        if (!p) {
            if (must_be_param) return false;
            continue;  // the island input or a value computed inside the island: same shape as the input
        }
        if (bn && i == 0) return false;
        if (!param_ok(*p, bn && i > 0)) return false;
    }
    return true;
}

}  // namespace

void integer_executor::impl::build(const quant_sim& sim) {
    model = sim.model();
    const graph& g = model;
    // Activation grids.
    for (const auto& q : sim.quantizers()) {
        if (q.kind != quantizer_kind::activation) continue;
        const auto p = sim.effective_params(q.name);
        if (!p) continue;
        const auto prod = g.producer(q.name);
        const std::string where =
            prod >= 0 ? g.nodes[static_cast<std::size_t>(prod)].describe() : std::string("model input");
        if (p->size() != 1 || p->gran.kind != granularity_kind::per_tensor)
            QUANTSIM_THROW(unsupported_error, "integer executor: value '", q.name, "' (", where,
                           ") has a per-channel activation grid; integer runtimes store activations per tensor");
        if (p->bitwidth > 8)
            QUANTSIM_THROW(unsupported_error, "integer executor: value '", q.name, "' (", where, ") has a ",
                           p->bitwidth, "-bit grid; the integer mode stores activations in 8 bits");
        qgrid gr;
        gr.scale = p->scale[0];
        gr.zp = p->zero_point[0];
        const auto r = p->range();
        gr.qmin = static_cast<std::int32_t>(r.qmin);
        gr.qmax = static_cast<std::int32_t>(r.qmax);
        gr.is_signed = p->is_signed;
        grids[q.name] = gr;
    }
    for (const auto& in : g.inputs) input_names.push_back(in.name);
    for (const auto& in : g.inputs)
        plan.push_back({in.name, grids.count(in.name) ? "QuantizeLinear" : "float input"});

    const graph_index index(g);
    std::set<std::size_t> fused_away;
    auto grid_of = [&](const std::string& v) -> const qgrid* {
        auto it = grids.find(v);
        return it == grids.end() ? nullptr : &it->second;
    };
    auto same_type = [](const qgrid* a, const qgrid* b) { return a && b && a->is_signed == b->is_signed; };

    // A Relu/Clip after an unquantized conv/matmul output that the runtime fuses: returns the node index and the
    // clamp it implies on the output grid, or -1.
    auto fused_activation = [&](const std::string& out, std::int32_t& qmin, std::int32_t& qmax) -> std::ptrdiff_t {
        if (grid_of(out) || index.is_output(out) || index.use_count(out) != 1) return -1;
        const auto& cons = index.consumers(out);
        if (cons.size() != 1) return -1;
        const node& a = g.nodes[cons[0]];
        if (a.op_type != "Relu" && a.op_type != "Clip") return -1;
        const qgrid* og = grid_of(a.outputs[0]);
        if (!og) return -1;
        float lo = a.op_type == "Relu" ? 0.0f : -INFINITY, hi = INFINITY;
        if (a.op_type == "Clip") {
            if (a.has_input(1)) {
                auto v = scalar_param_input(g, a, 1);
                if (!v) return -1;
                lo = *v;
            }
            if (a.has_input(2)) {
                auto v = scalar_param_input(g, a, 2);
                if (!v) return -1;
                hi = *v;
            }
        }
        qmin = og->qmin;
        qmax = og->qmax;
        if (!tflite()) {
            // ONNX Runtime removes a Relu/Clip before a QuantizeLinear when the activation cannot change the
            // quantized result (ClipQuantFusion / ReluQuantFusion): clip_min <= the upper edge of the values that
            // round to the type's lowest code and clip_max >= the lower edge of those that round to its highest
            // (QDQ::QuantizeDomain, in float, ties to even). A clip at 6 on a grid whose top is 6.0000002 goes.
            const std::int32_t tmin = og->is_signed ? -128 : 0, tmax = og->is_signed ? 127 : 255;
            auto edge = [&](std::int32_t code, float half) {
                const std::int64_t biased = static_cast<std::int64_t>(code) - og->zp;
                float before = static_cast<float>(biased) + half;
                if (biased % 2 == 1) before = std::nextafter(before, static_cast<float>(biased));
                return before * og->scale;
            };
            if (!(lo <= edge(tmin, 0.5f) && edge(tmax, -0.5f) <= hi)) return -1;
            return static_cast<std::ptrdiff_t>(cons[0]);
        }
        // TFLite fuses the activation as a clamp on the output integers.
        if (std::isfinite(lo)) qmin = std::max(qmin, og->zp + static_cast<std::int32_t>(std::round(lo / og->scale)));
        if (std::isfinite(hi)) qmax = std::min(qmax, og->zp + static_cast<std::int32_t>(std::round(hi / og->scale)));
        if (qmin > qmax) return -1;
        return static_cast<std::ptrdiff_t>(cons[0]);
    };

    // The grid a Conv/MatMul/Gemm output is requantized to: its own, or the grid after a Relu/Clip the runtime fuses
    // into it (then `value` is that activation's output and `act` its node index).
    struct output_grid {
        std::string value;
        const qgrid* grid = nullptr;
        std::int32_t qmin = 0, qmax = 0;
        std::ptrdiff_t act = -1;
    };
    auto output_grid_of = [&](const std::string& v) {
        output_grid o;
        o.value = v;
        o.grid = grid_of(v);
        if (o.grid) {
            o.qmin = o.grid->qmin;
            o.qmax = o.grid->qmax;
        } else if ((o.act = fused_activation(v, o.qmin, o.qmax)) >= 0) {
            o.value = g.nodes[static_cast<std::size_t>(o.act)].outputs[0];
            o.grid = grid_of(o.value);
        }
        return o;
    };

    auto make_requant = [&](const qgrid& in, const std::vector<float>& w_scales, const qgrid& out, std::int32_t qmin,
                            std::int32_t qmax) {
        detail::requant_params r;
        r.tflite = tflite();
        r.zp = out.zp;
        r.qmin = qmin;
        r.qmax = qmax;
        for (float ws : w_scales) {
            if (r.tflite)
                r.multiplier.push_back(tflite_quantize_multiplier(static_cast<double>(in.scale) *
                                                                  static_cast<double>(ws) / out.scale));
            else
                r.scale.push_back(ort_conv_multiplier(in.scale, ws, out.scale));
        }
        return r;
    };

    // Consecutive float nodes form one island: one executor over them, fed dequantized inputs, with the quantized
    // values inside fake-quantized by the executor (exactly DequantizeLinear(QuantizeLinear(x))), so that its
    // elementwise fusion applies. Values read after the island are its outputs.
    std::vector<std::size_t> island;
    auto flush_island = [&]() {
        if (island.empty()) return;
        const std::set<std::size_t> members(island.begin(), island.end());
        graph sub;
        sub.name = g.nodes[island.front()].name;
        sub.opset = g.opset;
        sub.domain_opsets = g.domain_opsets;
        step s;
        s.kind = step_kind::float_op;
        s.node = sub.name;
        std::set<std::string> produced;
        executor_options eo;
        eo.num_threads = opt.num_threads;
        for (const std::size_t ni : island) {
            const node& n = g.nodes[ni];
            for (const auto& in : n.inputs) {
                if (in.empty() || produced.count(in)) continue;
                if (const tensor* p = param_value(g, in)) {
                    if (sub.params.count(in)) continue;
                    const quantizer* q = sim.find(in);
                    const auto qp = q && q->kind == quantizer_kind::param ? sim.effective_params(in) : std::nullopt;
                    sub.params[in] = qp && p->type() == dtype::float32 ? fake_quant(*p, *qp, q->options) : *p;
                    continue;
                }
                if (std::find(s.inputs.begin(), s.inputs.end(), in) != s.inputs.end()) continue;
                const value_info* vi = g.info(in);
                value_info v = vi ? *vi : value_info{};
                v.name = in;
                sub.inputs.push_back(v);
                s.inputs.push_back(in);
            }
            for (const auto& out : n.outputs) {
                if (out.empty()) continue;
                produced.insert(out);
                bool used_outside = index.is_output(out), used_inside = false;
                for (const std::size_t c : index.consumers(out)) {
                    used_outside |= members.count(c) == 0;
                    used_inside |= members.count(c) != 0;
                }
                // A quantized value read inside the island is fake-quantized there; one read only after it is
                // quantized once, on the way out.
                if (grids.count(out) && used_inside) {
                    const quantizer* q = sim.find(out);
                    eo.quantizers[out] = value_quantizer{*sim.effective_params(out), q ? q->options : quant_options{}};
                }
                if (!used_outside) continue;
                const value_info* vi = g.info(out);
                value_info v = vi ? *vi : value_info{};
                v.name = out;
                sub.outputs.push_back(v);
                s.outputs.push_back(out);
            }
            sub.nodes.push_back(n);
        }
        if (opt.island_tables && s.inputs.size() == 1 && grids.count(s.inputs[0]) && !s.outputs.empty()) {
            const value_info* xi = g.info(s.inputs[0]);
            const std::int64_t rank = xi && xi->shape_known ? static_cast<std::int64_t>(xi->shape.size()) : -1;
            bool ok = true;
            for (const auto& out : s.outputs) ok &= grids.count(out) != 0;
            for (const std::size_t ni : island) ok = ok && elementwise_per_channel(g, g.nodes[ni], rank);
            // Stochastic rounding depends on the position, not only on the value.
            for (const auto& [name, vq] : eo.quantizers) ok &= vq.options.rounding != rounding_mode::stochastic;
            s.lut.eligible = ok;
            s.lut.rank = rank;
            if (ok)  // the island's nodes are the last plan entries
                for (std::size_t i = plan.size() - island.size(); i < plan.size(); ++i)
                    plan[i].kernel = "table " + plan[i].kernel.substr(6);
        }
        const std::size_t island_size = island.size();
        island.clear();
        if (s.outputs.empty()) return;  // nothing after the island reads it
        s.plan_at = plan.size() - island_size;
        s.plan_len = island_size;
        s.island = std::make_shared<executor>(std::move(sub), eo);
        s.label = "float island";
        steps.push_back(std::move(s));
    };

    for (std::size_t ni = 0; ni < g.nodes.size(); ++ni) {
        if (fused_away.count(ni)) continue;
        const node& n = g.nodes[ni];
        step s;
        s.node = n.name;
        bool lowered = false;

        if (n.op_type == "Conv" && n.inputs.size() >= 2 && n.attr_string("auto_pad", "NOTSET") == "NOTSET") {
            const qgrid* xg = grid_of(n.inputs[0]);
            const auto w = quantized_param(sim, g, n.inputs[1]);
            const value_info* xi = g.info(n.inputs[0]);
            output_grid og_out = output_grid_of(n.outputs[0]);
            const std::string& out = og_out.value;
            const qgrid* yg = og_out.grid;
            const std::int32_t qmin = og_out.qmin, qmax = og_out.qmax;
            const std::ptrdiff_t act = og_out.act;
            std::optional<param_q> b;
            bool bias_ok = !n.has_input(2);
            if (n.has_input(2)) {
                b = quantized_param(sim, g, n.inputs[2]);
                bias_ok = b && b->params.bitwidth == 32 && b->params.is_signed;
                if (bias_ok)
                    for (auto z : b->params.zero_point) bias_ok &= z == 0;
            }
            if (xg && yg && same_type(xg, yg) && w && w->params.bitwidth <= 8 && w->shape.size() == 4 && xi &&
                xi->shape.size() == 4 && bias_ok &&
                (w->params.gran.kind == granularity_kind::per_tensor ||
                 (w->params.gran.kind == granularity_kind::per_channel && w->params.gran.axis == 0))) {
                conv_geometry geo;
                geo.out_channels = w->shape[0];
                geo.group = n.attr_int("group", 1);
                geo.in_channels = w->shape[1] * geo.group;
                geo.kernel = {w->shape[2], w->shape[3]};
                const auto strides = n.attr_ints("strides", std::vector<std::int64_t>{1, 1});
                const auto dil = n.attr_ints("dilations", std::vector<std::int64_t>{1, 1});
                const auto pads = n.attr_ints("pads", std::vector<std::int64_t>{0, 0, 0, 0});
                if (strides.size() == 2 && dil.size() == 2 && pads.size() == 4) {
                    geo.stride = {strides[0], strides[1]};
                    geo.dilation = {dil[0], dil[1]};
                    geo.pad_begin = {pads[0], pads[1]};
                    geo.pad_end = {pads[2], pads[3]};
                    std::vector<float> ws = w->params.scale;
                    std::vector<std::int32_t> bias;
                    if (b) bias = b->values;
                    s.kind = step_kind::conv;
                    s.conv = detail::make_qconv(geo, w->values, w->params.zero_point, std::move(bias),
                                                make_requant(*xg, ws, *yg, qmin, qmax));
                    s.inputs = {n.inputs[0]};
                    s.outputs = {out};
                    s.label = act >= 0 ? "QLinearConv+" + g.nodes[static_cast<std::size_t>(act)].op_type
                                       : std::string("QLinearConv");
                    if (act >= 0) fused_away.insert(static_cast<std::size_t>(act));
                    lowered = true;
                }
            }
        } else if (n.op_type == "MatMul" && n.inputs.size() == 2) {
            const qgrid* ag = grid_of(n.inputs[0]);
            const auto w = quantized_param(sim, g, n.inputs[1]);
            output_grid og_out = output_grid_of(n.outputs[0]);
            const std::string& out = og_out.value;
            const qgrid* yg = og_out.grid;
            const std::int32_t qmin = og_out.qmin, qmax = og_out.qmax;
            const std::ptrdiff_t act = og_out.act;
            if (ag && yg && same_type(ag, yg) && w && w->params.bitwidth <= 8 && w->shape.size() == 2 &&
                (w->params.gran.kind == granularity_kind::per_tensor ||
                 (w->params.gran.kind == granularity_kind::per_channel && w->params.gran.axis == 1))) {
                s.kind = step_kind::matmul;
                s.matmul_k = w->shape[0];
                s.matmul = detail::make_qmatmul(w->shape[0], w->shape[1], w->values, w->params.zero_point, {},
                                                make_requant(*ag, w->params.scale, *yg, qmin, qmax));
                s.inputs = {n.inputs[0]};
                s.outputs = {out};
                s.label = act >= 0 ? "QLinearMatMul+" + g.nodes[static_cast<std::size_t>(act)].op_type
                                   : std::string("QLinearMatMul");
                if (act >= 0) fused_away.insert(static_cast<std::size_t>(act));
                lowered = true;
            }
        } else if (n.op_type == "Gemm" && n.inputs.size() >= 2 && n.attr_float("alpha", 1.0f) == 1.0f &&
                   n.attr_float("beta", 1.0f) == 1.0f && n.attr_int("transA", 0) == 0) {
            // ONNX Runtime's QGemm (QDQ Gemm fusion): the int32 bias C broadcast into the accumulators, the product
            // accumulated on top, requantized with (alpha * s_a * s_b) / s_y per column: a QLinearMatMul with bias.
            const qgrid* ag = grid_of(n.inputs[0]);
            const auto w = quantized_param(sim, g, n.inputs[1]);
            const bool trans_b = n.attr_int("transB", 0) != 0;
            const value_info* ai = g.info(n.inputs[0]);
            output_grid og_out = output_grid_of(n.outputs[0]);
            const std::string& out = og_out.value;
            const qgrid* yg = og_out.grid;
            const std::int32_t qmin = og_out.qmin, qmax = og_out.qmax;
            const std::ptrdiff_t act = og_out.act;
            std::optional<param_q> b;
            bool bias_ok = !n.has_input(2);
            if (n.has_input(2)) {
                b = quantized_param(sim, g, n.inputs[2]);
                bias_ok = b && b->params.bitwidth == 32 && b->params.is_signed && w && w->shape.size() == 2 &&
                          b->values.size() == static_cast<std::size_t>(trans_b ? w->shape[0] : w->shape[1]) &&
                          b->shape.size() <= 2 && (b->shape.size() < 2 || b->shape[0] == 1);
                if (bias_ok)
                    for (auto z : b->params.zero_point) bias_ok &= z == 0;
            }
            const std::int64_t col_axis = trans_b ? 0 : 1;
            if (ag && yg && same_type(ag, yg) && w && w->params.bitwidth <= 8 && w->shape.size() == 2 && bias_ok &&
                (!ai || !ai->shape_known || ai->shape.size() == 2) &&
                (w->params.gran.kind == granularity_kind::per_tensor ||
                 (w->params.gran.kind == granularity_kind::per_channel && w->params.gran.axis == col_axis))) {
                const std::int64_t k = trans_b ? w->shape[1] : w->shape[0], cols = trans_b ? w->shape[0] : w->shape[1];
                std::vector<std::int32_t> kxn(w->values.size());
                for (std::int64_t i = 0; i < k; ++i)
                    for (std::int64_t j = 0; j < cols; ++j)
                        kxn[static_cast<std::size_t>(i * cols + j)] =
                            w->values[static_cast<std::size_t>(trans_b ? j * k + i : i * cols + j)];
                s.kind = step_kind::matmul;
                s.matmul_k = k;
                s.matmul = detail::make_qmatmul(k, cols, kxn, w->params.zero_point, b ? b->values : std::vector<std::int32_t>{},
                                                make_requant(*ag, w->params.scale, *yg, qmin, qmax));
                s.inputs = {n.inputs[0]};
                s.outputs = {out};
                s.label = act >= 0 ? "QGemm+" + g.nodes[static_cast<std::size_t>(act)].op_type : std::string("QGemm");
                if (act >= 0) fused_away.insert(static_cast<std::size_t>(act));
                lowered = true;
            }
        } else if ((n.op_type == "Add" || n.op_type == "Mul") && n.inputs.size() == 2) {
            const qgrid* a = grid_of(n.inputs[0]);
            const qgrid* b = grid_of(n.inputs[1]);
            const qgrid* c = grid_of(n.outputs[0]);
            if (same_type(a, b) && same_type(a, c)) {
                s.inputs = {n.inputs[0], n.inputs[1]};
                s.outputs = {n.outputs[0]};
                if (n.op_type == "Add") {
                    s.kind = step_kind::add;
                    s.label = "QLinearAdd";
                    if (tflite())
                        s.tfl_add = make_tflite_add(a->scale, a->zp, b->scale, b->zp, c->scale, c->zp, c->qmin, c->qmax);
                    else
                        s.ort_add = make_ort_add(a->scale, a->zp, b->scale, b->zp, c->scale, c->zp, c->qmin, c->qmax);
                } else {
                    s.kind = step_kind::mul;
                    s.label = "QLinearMul";
                    if (tflite())
                        s.tfl_multiplier = tflite_quantize_multiplier(static_cast<double>(a->scale) * b->scale / c->scale);
                    else
                        s.mul_multiplier = ort_mul_multiplier(a->scale, b->scale, c->scale);
                }
                lowered = true;
            }
        } else if (n.op_type == "GlobalAveragePool" && n.inputs.size() == 1) {
            const qgrid* a = grid_of(n.inputs[0]);
            const qgrid* c = grid_of(n.outputs[0]);
            const value_info* xi = g.info(n.inputs[0]);
            if (same_type(a, c) && xi && xi->shape.size() == 4) {
                s.kind = step_kind::gap;
                s.label = "QLinearGlobalAveragePool";
                s.inputs = {n.inputs[0]};
                s.outputs = {n.outputs[0]};
                lowered = true;
            }
        } else if (n.op_type == "Softmax" && !tflite()) {
            const qgrid* a = grid_of(n.inputs[0]);
            const qgrid* c = grid_of(n.outputs[0]);
            if (same_type(a, c)) {
                s.kind = step_kind::softmax;
                s.label = "QLinearSoftmax";
                s.softmax_axis = n.attr_int("axis", -1);
                s.inputs = {n.inputs[0]};
                s.outputs = {n.outputs[0]};
                lowered = true;
            }
        }

        if (!lowered) {
            island.push_back(ni);
            plan.push_back({n.name, "float " + n.op_type});
            continue;
        }
        flush_island();
        plan.push_back({n.name, s.label});
        steps.push_back(std::move(s));
    }
    flush_island();
    // Each value is released after the last step that reads it (unless fetched).
    std::map<std::string, std::size_t, std::less<>> last_read;
    for (std::size_t i = 0; i < steps.size(); ++i)
        for (const auto& v : steps[i].inputs) last_read[v] = i;
    release_after.assign(steps.size(), {});
    for (const auto& [v, i] : last_read) release_after[i].push_back(v);
}

void integer_executor::impl::fill_lut(step& s, const tensor& x) {
    island_lut& L = s.lut;
    L.tables.clear();
    L.channels = 0;
    L.failed = true;  // until the tables are complete and consistent
    const std::int64_t n = x.rank() >= 2 ? x.dim(0) : 1, c = x.rank() >= 2 ? x.dim(1) : 1;
    if (x.numel() == 0 || c > (std::int64_t{1} << 16)) return;
    const std::int64_t plane = x.numel() / (n * c);
    const qgrid& xg = grids.at(s.inputs[0]);
    // Each channel sees at least three rounds of all 256 codes, the round k shifted by 5k positions so that a code
    // meets different vector lanes and tails: results that depend on the position, not only on the code, show up
    // as a conflict and the island keeps running as floats.
    const std::int64_t per_pass = n * plane, passes = (3 * 256 + per_pass - 1) / per_pass;
    std::vector<std::vector<std::int16_t>> work(s.outputs.size(), std::vector<std::int16_t>(static_cast<std::size_t>(c * 256), -1));
    auto code_at = [](std::int64_t i) { return static_cast<std::uint8_t>((i + 5 * (i / 256)) & 255); };
    for (std::int64_t pass = 0; pass < passes; ++pass) {
        tensor q = pool.take(x.shape(), x.type());
        auto* qp = static_cast<std::uint8_t*>(q.raw());
        for (std::int64_t b = 0; b < n; ++b)
            for (std::int64_t ch = 0; ch < c; ++ch)
                for (std::int64_t j = 0; j < plane; ++j) qp[(b * c + ch) * plane + j] = code_at(pass * per_pass + b * plane + j);
        // Exactly the float path of execute(): dequantize, run the island, quantize each output.
        std::map<std::string, tensor> in;
        in.emplace(s.inputs[0], dequantize_tensor(q, xg, pool));
        auto out = s.island->run(in, s.outputs);
        for (std::size_t k = 0; k < s.outputs.size(); ++k) {
            tensor& f = out.at(s.outputs[k]);
            if (f.shape() != x.shape()) return;  // not elementwise after all (a parameter broadcast the shape)
            tensor qo;
            quantize_tensor(f, grids.at(s.outputs[k]), tflite(), qo, pool);
            const auto* op = static_cast<const std::uint8_t*>(qo.raw());
            auto& w = work[k];
            for (std::int64_t b = 0; b < n; ++b)
                for (std::int64_t ch = 0; ch < c; ++ch)
                    for (std::int64_t j = 0; j < plane; ++j) {
                        const std::int64_t e = (b * c + ch) * plane + j;
                        std::int16_t& slot = w[static_cast<std::size_t>(ch * 256 + qp[e])];
                        if (slot >= 0 && slot != op[e]) return;
                        slot = op[e];
                    }
            pool.give(std::move(qo));
            pool.give(std::move(f));
        }
        pool.give(std::move(in.begin()->second));
        pool.give(std::move(q));
    }
    // One table for all channels when they agree (no per-channel operation inside): any channel count then fits.
    bool same = true;
    for (const auto& w : work)
        for (std::int64_t ch = 1; ch < c && same; ++ch)
            same = std::equal(w.begin(), w.begin() + 256, w.begin() + ch * 256);
    L.per_channel = !same;
    for (const auto& w : work) {
        std::vector<std::uint8_t> t(same ? 256 : w.size());
        for (std::size_t i = 0; i < t.size(); ++i) {
            if (w[i] < 0) return;  // a code was not reached (cannot happen: every round covers all codes)
            t[i] = static_cast<std::uint8_t>(w[i]);
        }
        L.tables.push_back(std::move(t));
    }
    L.channels = c;
    L.failed = false;
}

std::vector<tensor> integer_executor::impl::run_lut(const step& s, const tensor& x) {
    const island_lut& L = s.lut;
    const auto* src = static_cast<const std::uint8_t*>(x.raw());
    std::vector<tensor> ys;
    std::vector<std::uint8_t*> dst;
    for (const auto& out : s.outputs) {
        ys.push_back(pool.take(x.shape(), grids.at(out).storage()));
        dst.push_back(static_cast<std::uint8_t*>(ys.back().raw()));
    }
    const bool vec = opt.vectorized;
    if (!L.per_channel) {
        detail::parallel_range(x.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
            for (std::size_t k = 0; k < dst.size(); ++k) lut_span(src + b, dst[k] + b, e - b, L.tables[k].data(), vec);
        });
        return ys;
    }
    // Per channel: x is [N, C, ...] with C == L.channels (checked by the caller); one table per plane.
    const std::int64_t c = L.channels, planes = x.dim(0) * c, plane = x.numel() / planes;
    detail::parallel_range(planes, std::max<std::int64_t>(1, (1 << 15) / std::max<std::int64_t>(1, plane)),
                           [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t p = b; p < e; ++p)
            for (std::size_t k = 0; k < dst.size(); ++k)
                lut_span(src + p * plane, dst[k] + p * plane, plane, L.tables[k].data() + (p % c) * 256, vec);
    });
    return ys;
}

std::map<std::string, tensor> integer_executor::impl::execute(const std::map<std::string, tensor>& feeds,
                                                              const std::vector<std::string>& fetch, bool raw) {
    const kernel_threads_scope threads(opt.num_threads);
    std::unordered_map<std::string, tensor> qv, fv;  // integer and float values
    const bool tfl = tflite();
    auto grid = [&](const std::string& v) -> const qgrid* {
        auto it = grids.find(v);
        return it == grids.end() ? nullptr : &it->second;
    };
    auto get_q = [&](const std::string& v) -> const tensor& {
        auto it = qv.find(v);
        if (it == qv.end()) QUANTSIM_THROW(graph_error, "integer executor: value '", v, "' was not computed");
        return it->second;
    };
    auto get_f = [&](const std::string& v) -> const tensor& {
        if (auto it = fv.find(v); it != fv.end()) return it->second;
        if (auto it = qv.find(v); it != qv.end()) return fv[v] = dequantize_tensor(it->second, *grid(v), pool);
        QUANTSIM_THROW(graph_error, "integer executor: value '", v, "' was not computed");
    };
    auto put = [&](const std::string& v, tensor t) {
        if (const qgrid* gq = grid(v)) {
            tensor q;
            quantize_tensor(t, *gq, tfl, q, pool);
            pool.give(std::move(t));
            qv[v] = std::move(q);
        } else {
            fv[v] = std::move(t);
        }
    };

    for (const auto& name : input_names) {
        auto it = feeds.find(name);
        if (it == feeds.end()) QUANTSIM_THROW(invalid_argument, "integer executor: no feed for model input '", name, "'");
        const value_info* vi = model.info(name);
        if (vi && vi->shape_known && static_cast<std::size_t>(it->second.rank()) != vi->shape.size())
            QUANTSIM_THROW(shape_error, "integer executor: input '", name, "' has shape ", to_string(it->second.shape()),
                           ", the model expects ", to_string(*vi));
        put(name, it->second);
    }

    std::vector<std::string> names = fetch;
    if (names.empty())
        for (const auto& o : model.outputs) names.push_back(o.name);
    const std::set<std::string, std::less<>> keep(names.begin(), names.end());

    for (std::size_t si = 0; si < steps.size(); ++si) {
        step& s = steps[si];
        switch (s.kind) {
            case step_kind::float_op: {
                if (s.lut.eligible && !s.lut.failed) {
                    const tensor& x = get_q(s.inputs[0]);
                    const std::int64_t c = x.rank() >= 2 ? x.dim(1) : 1;
                    const bool rank_ok = s.lut.rank < 0 || s.lut.rank == x.rank();
                    if (rank_ok && x.numel() > 0 && (s.lut.channels == 0 || (s.lut.per_channel && s.lut.channels != c))) {
                        fill_lut(s, x);
                        if (s.lut.failed)  // the plan says how the nodes run: as floats from now on
                            for (std::size_t i = s.plan_at; i < s.plan_at + s.plan_len; ++i)
                                if (plan[i].kernel.rfind("table ", 0) == 0) plan[i].kernel = "float " + plan[i].kernel.substr(6);
                    }
                    if (rank_ok && x.numel() > 0 && !s.lut.failed) {
                        auto ys = run_lut(s, x);
                        for (std::size_t k = 0; k < ys.size(); ++k) qv[s.outputs[k]] = std::move(ys[k]);
                        break;
                    }
                }
                std::map<std::string, tensor> in;
                for (const auto& v : s.inputs) in.emplace(v, get_f(v));
                auto out = s.island->run(in, s.outputs);
                for (const auto& v : s.outputs) put(v, std::move(out.at(v)));
                break;
            }
            case step_kind::conv: {
                const tensor& x = get_q(s.inputs[0]);
                const qgrid& xg = *grid(s.inputs[0]);
                const qgrid& yg = *grid(s.outputs[0]);
                if (x.rank() != 4 || x.dim(1) != s.conv.geom.in_channels)
                    QUANTSIM_THROW(shape_error, "integer executor: node '", s.node, "': input shape ", to_string(x.shape()),
                                   " does not fit a conv with ", s.conv.geom.in_channels, " input channels");
                const std::int64_t oh = s.conv.geom.conv_out(0, x.dim(2)), ow = s.conv.geom.conv_out(1, x.dim(3));
                if (oh <= 0 || ow <= 0)
                    QUANTSIM_THROW(shape_error, "integer executor: node '", s.node, "': input ", to_string(x.shape()),
                                   " is smaller than the kernel");
                tensor y = pool.take({x.dim(0), s.conv.geom.out_channels, oh, ow}, yg.storage());
                detail::qconv_run(s.conv, x.dim(0), x.dim(2), x.dim(3), x.raw(), xg.is_signed, xg.zp, y.raw(),
                                  yg.is_signed, opt.vectorized);
                qv[s.outputs[0]] = std::move(y);
                break;
            }
            case step_kind::matmul: {
                const tensor& a = get_q(s.inputs[0]);
                const qgrid& ag = *grid(s.inputs[0]);
                const qgrid& yg = *grid(s.outputs[0]);
                if (a.rank() < 1 || a.dim(a.rank() - 1) != s.matmul_k)
                    QUANTSIM_THROW(shape_error, "integer executor: node '", s.node, "': input shape ", to_string(a.shape()),
                                   " does not end in ", s.matmul_k);
                shape_t ys = a.shape();
                ys.back() = s.matmul.cols;
                tensor y = pool.take(ys, yg.storage());
                detail::qmatmul_run(s.matmul, a.numel() / s.matmul_k, a.raw(), ag.is_signed, ag.zp, y.raw(), yg.is_signed,
                                    opt.vectorized);
                qv[s.outputs[0]] = std::move(y);
                break;
            }
            case step_kind::add:
            case step_kind::mul: {
                const tensor& a = get_q(s.inputs[0]);
                const tensor& b = get_q(s.inputs[1]);
                const qgrid& cg = *grid(s.outputs[0]);
                const shape_t os = broadcast_shape(a.shape(), b.shape(), "node '" + s.node + "'");
                tensor c = pool.take(os, cg.storage());
                binary_op(s, a, *grid(s.inputs[0]), b, *grid(s.inputs[1]), c, cg, tfl, opt.vectorized);
                qv[s.outputs[0]] = std::move(c);
                break;
            }
            case step_kind::gap: {
                const tensor& x = get_q(s.inputs[0]);
                const qgrid& xg = *grid(s.inputs[0]);
                const qgrid& yg = *grid(s.outputs[0]);
                const std::int64_t nc = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
                tensor y = pool.take({x.dim(0), x.dim(1), 1, 1}, yg.storage());
                const float mult = ort_gap_multiplier(xg.scale, yg.scale, hw);
                const fixed_multiplier tm =
                    tfl ? tflite_quantize_multiplier(static_cast<double>(xg.scale) / yg.scale) : fixed_multiplier{};
                detail::parallel_range(nc, 64, [&](std::int64_t b, std::int64_t e) {
                    for (std::int64_t i = b; i < e; ++i) {
                        std::int32_t sum = 0;  // typed loops: the compiler vectorizes the byte sums
                        if (xg.is_signed)
                            for (const std::int8_t* p = x.data<std::int8_t>() + i * hw, *pe = p + hw; p != pe; ++p) sum += *p;
                        else
                            for (const std::uint8_t* p = x.data<std::uint8_t>() + i * hw, *pe = p + hw; p != pe; ++p) sum += *p;
                        sum -= xg.zp * static_cast<std::int32_t>(hw);
                        const std::int32_t r =
                            tfl ? tflite_mean(sum, static_cast<std::int32_t>(hw), tm, yg.zp, yg.qmin, yg.qmax)
                                : ort_requantize(sum, mult, yg.zp, yg.qmin, yg.qmax);
                        qstore(y, yg.is_signed, i, r);
                    }
                });
                qv[s.outputs[0]] = std::move(y);
                break;
            }
            case step_kind::softmax: {
                const tensor& x = get_q(s.inputs[0]);
                const qgrid& xg = *grid(s.inputs[0]);
                const qgrid& yg = *grid(s.outputs[0]);
                const int axis = normalize_axis(s.softmax_axis, x.rank(), "Softmax axis");
                const std::int64_t d = x.dim(axis);
                std::int64_t inner = 1;
                for (int i = axis + 1; i < x.rank(); ++i) inner *= x.dim(i);
                const std::int64_t outer = d * inner != 0 ? x.numel() / (d * inner) : 0;
                const auto table = ort_softmax_table(xg.scale, d, xg.is_signed);
                tensor y = tensor::zeros(x.shape(), yg.storage());
                std::vector<std::int32_t> row(static_cast<std::size_t>(d)), res(static_cast<std::size_t>(d));
                for (std::int64_t o = 0; o < outer; ++o)
                    for (std::int64_t in = 0; in < inner; ++in) {
                        for (std::int64_t k = 0; k < d; ++k)
                            row[static_cast<std::size_t>(k)] = qload(x, xg.is_signed, (o * d + k) * inner + in);
                        std::fill(res.begin(), res.end(), 0);
                        ort_softmax_row(row.data(), res.data(), d, table, yg.scale, yg.zp, xg.is_signed);
                        for (std::int64_t k = 0; k < d; ++k)
                            qstore(y, yg.is_signed, (o * d + k) * inner + in, res[static_cast<std::size_t>(k)]);
                    }
                qv[s.outputs[0]] = std::move(y);
                break;
            }
        }
        // Values no later step reads go back to the pool now (warm buffers for the next layers, a smaller peak).
        for (const auto& v : release_after[si]) {
            if (keep.count(v)) continue;
            for (auto* m : {&qv, &fv})
                if (auto it = m->find(v); it != m->end()) {
                    pool.give(std::move(it->second));
                    m->erase(it);
                }
        }
    }

    std::map<std::string, tensor> result;
    for (const auto& v : names) {
        if (raw) {
            if (auto it = qv.find(v); it != qv.end()) {
                result[v] = it->second;
                continue;
            }
            if (auto it = fv.find(v); it != fv.end()) {
                result[v] = it->second;
                continue;
            }
            QUANTSIM_THROW(invalid_argument, "integer executor: no value '", v, "' in the model");
        }
        if (!qv.count(v) && !fv.count(v)) QUANTSIM_THROW(invalid_argument, "integer executor: no value '", v, "' in the model");
        result[v] = get_f(v);
    }
    // Everything not handed out goes back to the pool (it keeps only buffers nothing else references).
    for (auto* m : {&qv, &fv})
        for (auto& [name, t] : *m)
            if (!result.count(name)) pool.give(std::move(t));
    return result;
}

integer_executor::integer_executor(const quant_sim& sim, integer_options options) : impl_(std::make_unique<impl>()) {
    impl_->opt = options;
    impl_->pool.set_capacity(std::size_t{512} << 20);
    impl_->build(sim);
}
integer_executor::~integer_executor() = default;
integer_executor::integer_executor(integer_executor&&) noexcept = default;
integer_executor& integer_executor::operator=(integer_executor&&) noexcept = default;

std::vector<tensor> integer_executor::run(const std::vector<tensor>& inputs) {
    if (inputs.size() != impl_->input_names.size())
        QUANTSIM_THROW(invalid_argument, "integer executor: ", inputs.size(), " inputs given, the model has ",
                       impl_->input_names.size());
    std::map<std::string, tensor> feeds;
    for (std::size_t i = 0; i < inputs.size(); ++i) feeds.emplace(impl_->input_names[i], inputs[i]);
    auto out = impl_->execute(feeds, {}, false);
    std::vector<tensor> r;
    for (const auto& o : impl_->model.outputs) r.push_back(out.at(o.name));
    return r;
}

tensor integer_executor::run(const tensor& input) { return run(std::vector<tensor>{input}).at(0); }

std::map<std::string, tensor> integer_executor::run(const std::map<std::string, tensor>& feeds,
                                                    const std::vector<std::string>& fetch) {
    return impl_->execute(feeds, fetch, false);
}

std::map<std::string, tensor> integer_executor::run_raw(const std::map<std::string, tensor>& feeds,
                                                        const std::vector<std::string>& fetch) {
    return impl_->execute(feeds, fetch, true);
}

const std::vector<integer_step_info>& integer_executor::plan() const noexcept { return impl_->plan; }
const integer_options& integer_executor::options() const noexcept { return impl_->opt; }

std::string integer_executor::plan_summary() const {
    std::ostringstream os;
    std::map<std::string, int> counts;
    for (const auto& p : impl_->plan) {
        os << p.kernel << "  " << p.node << '\n';
        ++counts[p.kernel];
    }
    os << "-- " << impl_->plan.size() << " steps (" << to_string(impl_->opt.profile) << "):";
    for (const auto& [k, c] : counts) os << ' ' << k << " x" << c << ';';
    os << '\n';
    return os.str();
}

}  // namespace quantsim
