// The executor: liveness-based freeing and peak bytes, hooks (capture, in-place modification, inputs, views),
// update_param, fusion equivalence, fetching intermediates, constant folding, threads, profiling and errors.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <numeric>
#include <string>
#include <thread>

#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/kernels/conv.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/quant/fake_quant.hpp>

#include "ops_test_util.hpp"

namespace quantsim::test {
namespace {

// x -> Abs -> Neg -> Abs -> Neg ... (k nodes), output the last.
graph chain_graph(int k, std::int64_t n) {
    graph g;
    g.inputs.push_back(vinfo("x", {1, n}));
    std::string prev = "x";
    for (int i = 0; i < k; ++i) {
        const std::string out = "v" + std::to_string(i);
        g.nodes.push_back(make_node(i % 2 ? "Neg" : "Abs", {prev}, {out}));
        prev = out;
    }
    g.outputs.push_back(vinfo(prev, {1, n}));
    return g;
}

TEST(executor, frees_intermediates_peak_is_two_activations_on_a_chain) {
    const std::int64_t n = 1 << 16;
    const std::size_t bytes = static_cast<std::size_t>(n) * 4;
    executor_options o;
    o.fuse = false;  // one tensor per node
    executor ex(chain_graph(12, n), o);
    EXPECT_EQ(ex.num_steps(), 12u);
    std::mt19937 rng(kSeed + 40);
    const tensor x = random_tensor({1, n}, rng);
    const tensor y = ex.run({x})[0];
    EXPECT_EQ(ex.last_peak_bytes(), 2 * bytes) << "live set of a chain is the step's input and output";
    // Abs, Neg, Abs, Neg ... = -|x|
    for (std::int64_t i = 0; i < n; i += 997) EXPECT_FLOAT_EQ(y.f32()[i], -std::fabs(x.f32()[i]));
    // Fetching every intermediate keeps them all alive.
    std::vector<std::string> all;
    for (int i = 0; i < 12; ++i) all.push_back("v" + std::to_string(i));
    ex.run({{"x", x}}, all);
    EXPECT_EQ(ex.last_peak_bytes(), 12 * bytes);
}

TEST(executor, views_are_counted_once) {
    // x -> Relu -> Reshape (view) -> Neg: the view shares Relu's storage.
    graph g;
    g.inputs.push_back(vinfo("x", {4, 256}));
    g.params["shape"] = i64({1024});
    g.nodes.push_back(make_node("Relu", {"x"}, {"r"}));
    g.nodes.push_back(make_node("Reshape", {"r", "shape"}, {"v"}));
    g.nodes.push_back(make_node("Neg", {"v"}, {"y"}));
    g.outputs.push_back(vinfo("y", {1024}));
    executor_options o;
    o.fuse = false;
    executor ex(g, o);
    ex.run({tensor::zeros({4, 256})});
    EXPECT_EQ(ex.last_peak_bytes(), 2u * 1024 * 4);
}

TEST(executor, hooks_capture_and_modify_in_place) {
    const std::int64_t n = 100;
    executor ex(chain_graph(4, n));  // Abs, Neg, Abs, Neg
    std::mt19937 rng(kSeed + 41);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 41));
    const tensor x = random_tensor({1, n}, rng);
    const tensor x_copy = x.clone();
    std::map<std::string, tensor> seen;
    const int capture = ex.add_hook([&](std::string_view name, const node* prod, tensor& v) {
        seen[std::string(name)] = v.clone();
        if (name == "x") EXPECT_EQ(prod, nullptr);
        else EXPECT_NE(prod, nullptr);
    });
    const tensor y0 = ex.run({x})[0];
    EXPECT_EQ(seen.size(), 5u);  // x, v0..v3
    EXPECT_TRUE(all_close(seen["v3"], y0, 0.0f, 0.0f));
    ex.remove_hook(capture);
    // Modify v1 (= -|x|) in place: scale by 2 -> the rest of the chain sees it.
    ex.add_hook([](std::string_view, const node*, tensor& v) {
        for (auto& f : v.span<float>()) f *= 2.0f;
    }, {"v1"});
    const tensor y1 = ex.run({x})[0];
    for (std::int64_t i = 0; i < n; ++i) EXPECT_FLOAT_EQ(y1.f32()[i], 2.0f * y0.f32()[i]);
    ex.clear_hooks();
    // A hook on the model input modifies what the graph sees, never the caller's tensor.
    ex.add_hook([](std::string_view, const node*, tensor& v) { v.fill(1.0f); }, {"x"});
    const tensor y2 = ex.run({x})[0];
    for (std::int64_t i = 0; i < n; ++i) EXPECT_FLOAT_EQ(y2.f32()[i], -1.0f);
    EXPECT_TRUE(all_close(x, x_copy, 0.0f, 0.0f));
    // Replacing the tensor with another shape is refused.
    ex.clear_hooks();
    ex.add_hook([](std::string_view, const node*, tensor& v) { v = tensor::zeros({3}); }, {"v0"});
    EXPECT_THROW(ex.run({x}), invalid_argument);
    EXPECT_THROW(ex.add_hook([](std::string_view, const node*, tensor&) {}, {"nope"}), invalid_argument);
}

TEST(executor, reused_buffers_never_alias_tensors_the_caller_or_a_hook_holds) {
    // The executor recycles freed activations across runs; tensors handed out (outputs, shallow copies kept by a
    // hook) must never be recycled under their holder.
    std::mt19937 rng(kSeed + 48);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 48));
    executor ex(chain_graph(6, 4096));
    tensor kept;  // a shallow copy, not a clone
    ex.add_hook([&](std::string_view, const node*, tensor& v) { kept = v; }, {"v2"});
    const tensor x1 = random_tensor({1, 4096}, rng);
    const tensor y1 = ex.run({x1})[0];
    const tensor y1_copy = y1.clone();
    for (int r = 0; r < 3; ++r) ex.run({random_tensor({1, 4096}, rng)});
    EXPECT_TRUE(all_close(y1, y1_copy, 0.0f, 0.0f));
    ex.clear_hooks();
    const tensor kept_copy = kept.clone();  // v2 of the last hooked run
    for (int r = 0; r < 3; ++r) ex.run({random_tensor({1, 4096}, rng)});
    EXPECT_TRUE(all_close(kept, kept_copy, 0.0f, 0.0f));
}

TEST(executor, hook_on_a_view_does_not_corrupt_its_source) {
    // r = Relu(x); v = Reshape(r) (view); y1 = Neg(v); y2 = Neg(r). A hook zeroing v must not change y2.
    graph g;
    g.inputs.push_back(vinfo("x", {2, 3}));
    g.params["shape"] = i64({6});
    g.nodes.push_back(make_node("Relu", {"x"}, {"r"}));
    g.nodes.push_back(make_node("Reshape", {"r", "shape"}, {"v"}));
    g.nodes.push_back(make_node("Neg", {"v"}, {"y1"}));
    g.nodes.push_back(make_node("Neg", {"r"}, {"y2"}));
    g.outputs.push_back(vinfo("y1", {6}));
    g.outputs.push_back(vinfo("y2", {2, 3}));
    executor ex(g);
    ex.add_hook([](std::string_view, const node*, tensor& v) { v.fill(0.0f); }, {"v"});
    const auto out = ex.run({tensor::from({1, 2, 3, 4, 5, 6}, {2, 3})});
    for (int i = 0; i < 6; ++i) {
        EXPECT_EQ(out[0].f32()[i], 0.0f);
        EXPECT_EQ(out[1].f32()[i], -static_cast<float>(i + 1));
    }
}

// A MobileNetV3-style block: conv-BN-hardswish (spelled Add/Clip/Mul/Div), depthwise conv-BN-ReLU, SE (GAP, conv,
// ReLU, conv, HardSigmoid, Mul), projection conv-BN, residual Add, then per-channel affine + HardSigmoid*x.
graph mobile_block(std::mt19937& rng, std::int64_t c = 8) {
    graph g;
    g.inputs.push_back(vinfo("x", {-1, c, 6, 20}, dtype::float32, {"N", "", "", ""}));
    auto param = [&](const std::string& name, shape_t shape, float lo = -0.5f, float hi = 0.5f) {
        g.params[name] = random_tensor(shape, rng, lo, hi);
        return name;
    };
    auto bn = [&](const std::string& p, const std::string& in, const std::string& out) {
        g.nodes.push_back(make_node("BatchNormalization",
                                    {in, param(p + ".s", {c}, 0.5f, 1.5f), param(p + ".b", {c}), param(p + ".m", {c}),
                                     param(p + ".v", {c}, 0.5f, 2.0f)},
                                    {out}, {{"epsilon", 1e-5f}}));
    };
    g.params["three"] = tensor::from({3.0f}, {});
    g.params["zero"] = tensor::from({0.0f}, {});
    g.params["six"] = tensor::from({6.0f}, {});
    g.nodes.push_back(make_node("Conv", {"x", param("w1", {c, c, 1, 1})}, {"c1"}));
    bn("bn1", "c1", "b1");
    g.nodes.push_back(make_node("Add", {"b1", "three"}, {"a1"}));
    g.nodes.push_back(make_node("Clip", {"a1", "zero", "six"}, {"k1"}));
    g.nodes.push_back(make_node("Mul", {"b1", "k1"}, {"m1"}));
    g.nodes.push_back(make_node("Div", {"m1", "six"}, {"h1"}));
    g.nodes.push_back(make_node("Conv", {"h1", param("w2", {c, 1, 3, 3})}, {"c2"},
                                {{"group", c}, {"pads", ints({1, 1, 1, 1})}}));
    bn("bn2", "c2", "b2");
    g.nodes.push_back(make_node("Relu", {"b2"}, {"r2"}));
    g.nodes.push_back(make_node("GlobalAveragePool", {"r2"}, {"gp"}));
    g.nodes.push_back(make_node("Conv", {"gp", param("w3", {c / 2, c, 1, 1}), param("b3", {c / 2})}, {"c3"}));
    g.nodes.push_back(make_node("Relu", {"c3"}, {"r3"}));
    g.nodes.push_back(make_node("Conv", {"r3", param("w4", {c, c / 2, 1, 1}), param("b4", {c})}, {"c4"}));
    g.nodes.push_back(make_node("HardSigmoid", {"c4"}, {"hs"}, {{"alpha", 0.2f}, {"beta", 0.5f}}));
    g.nodes.push_back(make_node("Mul", {"r2", "hs"}, {"se"}));
    g.nodes.push_back(make_node("Conv", {"se", param("w5", {c, c, 1, 1})}, {"c5"}));
    bn("bn5", "c5", "b5");
    g.nodes.push_back(make_node("Add", {"x", "b5"}, {"res"}));
    g.nodes.push_back(make_node("Conv", {"res", param("w6", {c, c, 3, 3}), param("b6", {c})}, {"c6"},
                                {{"pads", ints({1, 1, 1, 1})}, {"strides", ints({2, 1})}}));
    g.nodes.push_back(make_node("Mul", {param("scale", {1}, 0.5f, 1.5f), "c6"}, {"sc"}));
    g.nodes.push_back(make_node("Add", {"sc", param("shift", {c, 1, 1})}, {"af"}));
    g.nodes.push_back(make_node("HardSigmoid", {"af"}, {"hs2"}, {{"alpha", 1.0f / 6.0f}, {"beta", 0.5f}}));
    g.nodes.push_back(make_node("Mul", {"af", "hs2"}, {"y"}));
    g.outputs.push_back(vinfo("y", {-1, c, 3, 20}, dtype::float32, {"N", "", "", ""}));
    return g;
}

TEST(executor, fused_plan_matches_unfused_and_has_fewer_steps) {
    std::mt19937 rng(kSeed + 42);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 42));
    const graph g = mobile_block(rng);
    executor_options plain;
    plain.fuse = false;
    executor ref(g, plain);
    executor fused(g);
    EXPECT_LT(fused.num_steps(), ref.num_steps());
    EXPECT_LE(fused.num_steps(), 12u) << fused.plan_summary();
    EXPECT_NE(fused.plan_summary().find("affine-folded"), std::string::npos) << fused.plan_summary();
    EXPECT_NE(fused.plan_summary().find("input-scale-folded"), std::string::npos) << fused.plan_summary();
    for (std::int64_t batch : {1, 3}) {
        const tensor x = random_tensor({batch, 8, 6, 20}, rng);
        const tensor a = ref.run({x})[0];
        const tensor b = fused.run({x})[0];
        EXPECT_TRUE(all_close(b, a, 1e-4f, 1e-5f)) << "batch " << batch;
    }
}

TEST(executor, hooks_and_fetches_see_unfused_values) {
    std::mt19937 rng(kSeed + 43);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 43));
    const graph g = mobile_block(rng);
    executor_options plain;
    plain.fuse = false;
    executor ref(g, plain);
    executor fused(g);
    const tensor x = random_tensor({2, 8, 6, 20}, rng);
    // Fetch values that are internal to fused groups: the plan keeps them.
    const std::vector<std::string> names = {"b1", "k1", "b2", "c4", "b5", "af"};
    auto want = ref.run({{"x", x}}, names);
    auto got = fused.run({{"x", x}}, names);
    for (const auto& n : names) EXPECT_TRUE(all_close(got[n], want[n], 1e-4f, 1e-5f)) << n;
    // A hook on an internal value sees the unfused value and may change it.
    tensor seen;
    fused.add_hook([&](std::string_view, const node*, tensor& v) {
        seen = v.clone();
        v.fill(0.0f);
    }, {"b2"});
    ref.add_hook([&](std::string_view, const node*, tensor& v) { v.fill(0.0f); }, {"b2"});
    const tensor y_fused = fused.run({x})[0];
    const tensor y_ref = ref.run({x})[0];
    EXPECT_TRUE(all_close(seen, want["b2"], 1e-4f, 1e-5f));
    EXPECT_TRUE(all_close(y_fused, y_ref, 1e-4f, 1e-5f));
}

TEST(executor, wrong_recorded_shapes_fail_loudly_in_fused_groups) {
    // The graph records r as [N, 8, 4, 5] but the runtime Reshape target makes it [N, 4, 8, 5]: the fused
    // per-channel Mul/Add (laid out for 8 channels) must refuse instead of indexing the wrong channel.
    graph g;
    g.inputs.push_back(vinfo("x", {-1, 160}, dtype::float32, {"N", ""}));
    g.inputs.push_back(vinfo("s", {4}, dtype::int64));
    g.params["c"] = tensor::full({8, 1, 1}, 2.0f);
    g.params["d"] = tensor::full({8, 1, 1}, 1.0f);
    g.nodes.push_back(make_node("Reshape", {"x", "s"}, {"r"}));
    g.nodes.push_back(make_node("Mul", {"r", "c"}, {"m"}));
    g.nodes.push_back(make_node("Add", {"m", "d"}, {"y"}));
    g.value_infos["r"] = vinfo("r", {-1, 8, 4, 5}, dtype::float32, {"N", "", "", ""});
    g.value_infos["m"] = vinfo("m", {-1, 8, 4, 5}, dtype::float32, {"N", "", "", ""});
    g.outputs.push_back(vinfo("y", {-1, 8, 4, 5}, dtype::float32, {"N", "", "", ""}));
    executor ex(g);
    ASSERT_EQ(ex.num_steps(), 2u) << ex.plan_summary();  // Reshape, then Mul+Add fused
    const tensor x = tensor::full({1, 160}, 1.0f);
    EXPECT_EQ(ex.run({{"x", x}, {"s", i64({1, 8, 4, 5})}}).at("y").f32()[0], 3.0f);
    EXPECT_THROW(ex.run({{"x", x}, {"s", i64({1, 4, 8, 5})}}), shape_error);
}

TEST(executor, update_param_rebuilds_affected_kernels) {
    std::mt19937 rng(kSeed + 44);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 44));
    graph g = mobile_block(rng);
    executor ex(g);
    const tensor x = random_tensor({2, 8, 6, 20}, rng);
    const tensor y0 = ex.run({x})[0];
    // New conv weight (under a folded BatchNormalization) and new BN statistics.
    const tensor w1 = random_tensor({8, 8, 1, 1}, rng);
    const tensor v5 = random_tensor({8}, rng, 0.1f, 0.3f);
    ex.update_param("w1", w1);
    ex.update_param("bn5.v", v5);
    g.params["w1"] = w1;
    g.params["bn5.v"] = v5;
    executor fresh(g);
    const tensor y1 = ex.run({x})[0];
    EXPECT_FALSE(all_close(y1, y0, 1e-3f, 1e-4f));
    EXPECT_TRUE(all_close(y1, fresh.run({x})[0], 1e-5f, 1e-6f));
    EXPECT_TRUE(all_close(ex.param("w1"), w1, 0.0f, 0.0f));
    EXPECT_THROW(ex.update_param("w1", tensor::zeros({8, 8})), shape_error);
    EXPECT_THROW(ex.update_param("nope", w1), invalid_argument);
}

// ---- value quantizers (fake-quant fused into the steps) ------------------------------------------------------

bool bit_equal(const tensor& a, const tensor& b) {
    return a.shape() == b.shape() && std::memcmp(a.f32(), b.f32(), static_cast<std::size_t>(a.numel()) * 4) == 0;
}

std::string first_difference(const tensor& a, const tensor& b) {
    if (a.shape() != b.shape()) return "shapes " + to_string(a.shape()) + " vs " + to_string(b.shape());
    for (std::int64_t i = 0; i < a.numel(); ++i)
        if (std::memcmp(a.f32() + i, b.f32() + i, 4) != 0)
            return "element " + std::to_string(i) + ": " + std::to_string(a.f32()[i]) + " vs " + std::to_string(b.f32()[i]);
    return "none";
}

/// Fraction of a value's elements allowed to move by a grid step (see value_quantizers_fuse_and_match_hooks_up_to_rare_flips).
constexpr double kRareFlips = 0.02;

/// Random quantizers on a random subset of the graph's float values (grids from the values' observed ranges).
value_quantizer_map random_quantizers(const graph& g, const tensor& x, std::mt19937& rng, double p_quantized) {
    std::vector<std::string> values{"x"};
    for (const auto& n : g.nodes) values.push_back(n.outputs[0]);
    executor probe(g);
    const auto all = probe.run({{"x", x}}, values);
    std::bernoulli_distribution pick(p_quantized);
    std::uniform_int_distribution<int> mode(0, 4), arith(0, 1), bits(0, 2), sym(0, 1);
    value_quantizer_map m;
    for (const auto& v : values) {
        if (!pick(rng)) continue;
        const tensor& t = all.at(v);
        const auto [lo, hi] = std::minmax_element(t.f32(), t.f32() + t.numel());
        quant_spec spec;
        spec.bitwidth = std::array<int, 3>{4, 8, 16}[static_cast<std::size_t>(bits(rng))];
        spec.scheme = sym(rng) ? qscheme::symmetric : qscheme::asymmetric;
        value_quantizer q;
        // A range a bit narrower than observed: some values clip.
        q.params = quant_params::per_tensor(encoding_from_range(*lo * 0.9, *hi * 0.9, spec));
        q.options.rounding = static_cast<rounding_mode>(mode(rng));
        q.options.arithmetic = static_cast<scale_arithmetic>(arith(rng));
        q.options.seed = rng();
        m.emplace(v, q);
    }
    return m;
}

/// The reference: every quantizer applied by a hook after its (unfused-boundary) step, as quant_sim did.
int add_reference_hook(executor& ex, const value_quantizer_map& qm) {
    std::set<std::string, std::less<>> names;
    for (const auto& [k, v] : qm) names.insert(k);
    return ex.add_hook([&qm](std::string_view name, const node*, tensor& v) {
        const value_quantizer& q = qm.find(name)->second;
        fake_quant_(v, q.params, q.options);
    }, names);
}

TEST(executor, value_quantizers_fuse_and_match_hooks_up_to_rare_flips) {
    for (unsigned trial = 0; trial < 12; ++trial) {
        const unsigned seed = kSeed + 100 + trial;
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937 rng(seed);
        const graph g = mobile_block(rng);
        const tensor x = random_tensor({trial % 3 + 1, 8, 6, 20}, rng, -2.0f, 2.0f);
        // Trial 0 quantizes every value (the quant_sim case); the others random subsets.
        const value_quantizer_map qm = random_quantizers(g, x, rng, trial == 0 ? 1.0 : 0.5);
        executor ref(g);
        add_reference_hook(ref, qm);
        executor_options o;
        o.quantizers = qm;
        executor fused(g, o);
        if (trial == 0) {
            EXPECT_LT(fused.num_steps(), ref.num_steps()) << fused.plan_summary();
        }
        // Arbitrary placements: where the hook path could not fuse around a quantized value (it ran a
        // BatchNormalization as its own kernel, x * s + t with a fused multiply-add, where the fused program
        // multiplies and adds), the value reaching a later quantizer may differ by float reassociation (an ulp), which
        // moves an element by one grid step when it sits that close to a rounding boundary. Bound: every fetched
        // quantized value stays on its grid and differs from the reference in at most kRareFlips of its elements.
        std::vector<std::string> names;
        for (const auto& [k, v] : qm) names.push_back(k);
        const auto got = fused.run({{"x", x}}, names);
        const auto want = ref.run({{"x", x}}, names);
        std::int64_t exact_values = 0;
        for (const auto& n : names) {
            const tensor &a = got.at(n), &b = want.at(n);
            ASSERT_EQ(a.shape(), b.shape()) << n;
            std::int64_t differ = 0;
            for (std::int64_t i = 0; i < a.numel(); ++i) differ += a.f32()[i] != b.f32()[i];
            EXPECT_LE(static_cast<double>(differ), kRareFlips * static_cast<double>(a.numel()) + 1)
                << n << ": " << first_difference(a, b) << "\n" << fused.plan_summary() << "reference:\n"
                << ref.plan_summary();
            exact_values += differ == 0;
            const double s = qm.at(n).params.scale[0];
            for (std::int64_t i = 0; i < a.numel(); i += 7) {
                const double r = a.f32()[i] / s;
                ASSERT_NEAR(r, std::nearbyint(r), 1e-3 * std::max(1.0, std::fabs(r))) << n << " element " << i;
            }
        }
        // Most values are exactly the reference's.
        EXPECT_GE(exact_values * 10, static_cast<std::int64_t>(names.size()) * 7);
        const tensor y_ref = ref.run({x})[0];
        const tensor y = fused.run({x})[0];
        if (qm.count("y")) {
            EXPECT_LE(static_cast<double>(std::inner_product(y.f32(), y.f32() + y.numel(), y_ref.f32(), std::int64_t{0},
                                                             std::plus<>(), std::not_equal_to<>())),
                      kRareFlips * static_cast<double>(y.numel()) + 1);
        } else {
            EXPECT_TRUE(all_close(y, y_ref, 1e-3f, 1e-3f));
        }
    }
}

TEST(executor, scale_mul_with_unknown_spatial_dims_fuses_with_its_fake_quant) {
    // x[N, C, H, W] * s[N, C, 1, 1] with H, W unknown to the graph (dynamic-size models): the output provably has
    // x's shape, so the Mul and its quantizer are one pass; an Add of two such values cannot be proven (either could
    // broadcast at run time) and stays a plain step. Both equal the hook reference exactly at several sizes.
    const unsigned seed = kSeed + 130;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    graph g;
    g.inputs.push_back(vinfo("x", {-1, 8, -1, -1}, dtype::float32, {"N", "", "", ""}));
    g.inputs.push_back(vinfo("s", {-1, 8, 1, 1}, dtype::float32, {"N", "", "", ""}));
    g.inputs.push_back(vinfo("z", {-1, 8, -1, -1}, dtype::float32, {"N", "", "", ""}));
    g.nodes.push_back(make_node("Mul", {"x", "s"}, {"m"}));
    g.nodes.push_back(make_node("Add", {"m", "z"}, {"y"}));
    g.value_infos["m"] = vinfo("m", {-1, 8, -1, -1}, dtype::float32, {"N", "", "", ""});
    g.outputs.push_back(vinfo("y", {-1, 8, -1, -1}, dtype::float32, {"N", "", "", ""}));
    value_quantizer_map qm;
    for (const char* v : {"m", "y"}) {
        quant_spec spec;
        value_quantizer q;
        q.params = quant_params::per_tensor(encoding_from_range(-1.5, 2.0, spec));
        qm.emplace(v, q);
    }
    executor ref(g);
    add_reference_hook(ref, qm);
    executor_options o;
    o.quantizers = qm;
    executor fused(g, o);
    const std::string plan = fused.plan_summary();
    EXPECT_NE(plan.find("Mul [Mul_m] program{mul,fake_quant}"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("Add [Add_y] program"), std::string::npos) << plan;
    for (const shape_t& xs : {shape_t{2, 8, 3, 5}, shape_t{1, 8, 4, 4}, shape_t{3, 8, 1, 17}}) {
        const tensor x = random_tensor(xs, rng, -2.0f, 2.0f), z = random_tensor(xs, rng, -1.0f, 1.0f);
        const tensor sc = random_tensor({xs[0], 8, 1, 1}, rng, 0.0f, 1.0f);
        const std::map<std::string, tensor> feeds{{"x", x}, {"s", sc}, {"z", z}};
        const auto got = fused.run(feeds, {"m", "y"});
        const auto want = ref.run(feeds, {"m", "y"});
        for (const char* v : {"m", "y"}) {
            ASSERT_EQ(got.at(v).shape(), want.at(v).shape()) << v;
            EXPECT_EQ(std::memcmp(got.at(v).f32(), want.at(v).f32(), static_cast<std::size_t>(got.at(v).numel()) * 4), 0)
                << v << " " << first_difference(got.at(v), want.at(v));
        }
    }
}

TEST(executor, value_quantizers_run_before_hooks_and_follow_updates) {
    const unsigned seed = kSeed + 120;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const graph g = mobile_block(rng);
    const tensor x = random_tensor({2, 8, 6, 20}, rng, -2.0f, 2.0f);
    value_quantizer_map qm = random_quantizers(g, x, rng, 1.0);
    executor ref(g);
    add_reference_hook(ref, qm);
    executor fused(g);
    fused.set_value_quantizers(qm);
    EXPECT_EQ(fused.value_quantizers().size(), qm.size());
    // A user hook on a value inside a would-be fused group sees the quantized value; its change propagates.
    tensor seen;
    auto zero_hook = [&](std::string_view, const node*, tensor& v) {
        seen = v.clone();
        v.fill(0.5f);
    };
    fused.add_hook(zero_hook, {"b2"});
    ref.add_hook([](std::string_view, const node*, tensor& v) { v.fill(0.5f); }, {"b2"});
    EXPECT_TRUE(bit_equal(fused.run({x})[0], ref.run({x})[0]));
    {
        // The hook saw b2 after its quantizer: every element is on b2's grid.
        const auto& q = qm.at("b2").params;
        for (std::int64_t i = 0; i < seen.numel(); ++i) {
            const double r = seen.f32()[i] / static_cast<double>(q.scale[0]);
            ASSERT_NEAR(r, std::nearbyint(r), 1e-3) << "element " << i << " of b2 is not on its grid";
        }
    }
    fused.clear_hooks();
    ref.clear_hooks();
    add_reference_hook(ref, qm);  // clear_hooks removed it too
    // A new grid on one value (same set of quantized values) must reach the fused kernels.
    const tensor y0 = fused.run({x})[0];
    qm.at("c1").params.scale[0] *= 3.0f;
    qm.at("h1").params.scale[0] *= 0.25f;
    fused.set_value_quantizers(qm);
    const tensor y1 = fused.run({x})[0];
    EXPECT_FALSE(bit_equal(y1, y0));
    EXPECT_TRUE(bit_equal(y1, ref.run({x})[0])) << first_difference(y1, ref.run({x})[0]);
    // A per-channel quantizer (not fusable: applied after its step) and quantized model input.
    quant_params pc;
    pc.bitwidth = 8;
    pc.gran = granularity::per_channel(1);
    pc.scale.assign(8, 0.05f);
    pc.zero_point.assign(8, 128);
    for (std::size_t c = 0; c < 8; ++c) pc.scale[c] = 0.01f * static_cast<float>(c + 1);
    qm.at("r2").params = pc;
    fused.set_value_quantizers(qm);
    EXPECT_TRUE(bit_equal(fused.run({x})[0], ref.run({x})[0]));
    // Removing them gives the plain model back.
    fused.set_value_quantizers({});
    executor plain(g);
    EXPECT_TRUE(bit_equal(fused.run({x})[0], plain.run({x})[0]));
    // Errors name the value.
    value_quantizer_map bad;
    bad["nope"] = qm.at("c1");
    EXPECT_THROW(fused.set_value_quantizers(bad), invalid_argument);
    bad.clear();
    bad["c1"] = qm.at("c1");
    bad["c1"].params.scale[0] = -1.0f;
    EXPECT_THROW(fused.set_value_quantizers(bad), invalid_argument);
    bad["c1"] = qm.at("c1");
    bad["c1"].params.gran = granularity::per_channel(1);
    bad["c1"].params.scale.assign(5, 0.1f);
    bad["c1"].params.zero_point.assign(5, 0);
    try {
        fused.set_value_quantizers(bad);
        ADD_FAILURE() << "5 channels on an 8-channel value must be rejected";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("c1"), std::string::npos) << e.what();
    }
}

TEST(executor, constant_subgraphs_are_folded) {
    // scale = Cast(Mul(p, p)) is computed once; only the Mul with x runs.
    graph g;
    g.inputs.push_back(vinfo("x", {3}));
    g.params["p"] = tensor::from({2.0f, 3.0f, 4.0f}, {3});
    g.nodes.push_back(make_node("Mul", {"p", "p"}, {"sq"}));
    g.nodes.push_back(make_node("Mul", {"x", "sq"}, {"y"}));
    g.outputs.push_back(vinfo("y", {3}));
    executor ex(g);
    EXPECT_EQ(ex.num_steps(), 1u);
    const tensor y = ex.run({tensor::from({1.0f, 1.0f, 2.0f}, {3})})[0];
    EXPECT_EQ(std::vector<float>(y.f32(), y.f32() + 3), (std::vector<float>{4, 9, 32}));
    ex.update_param("p", tensor::from({1.0f, 1.0f, 1.0f}, {3}));
    const tensor y2 = ex.run({tensor::from({1.0f, 1.0f, 2.0f}, {3})})[0];
    EXPECT_EQ(std::vector<float>(y2.f32(), y2.f32() + 3), (std::vector<float>{1, 1, 2}));
}

TEST(executor, threads_do_not_change_results_beyond_rounding) {
    std::mt19937 rng(kSeed + 45);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 45));
    const graph g = mobile_block(rng, 16);
    executor_options one, two;
    one.num_threads = 1;
    two.num_threads = 2;
    executor a(g, one), b(g, two);
    const tensor x = random_tensor({4, 16, 6, 20}, rng);
    EXPECT_TRUE(all_close(b.run({x})[0], a.run({x})[0], 1e-5f, 1e-6f));
}

TEST(executor, executors_on_several_threads_run_concurrently) {
    // Calibration runs one executor per worker thread; their kernels share the thread pool.
    std::mt19937 rng(kSeed + 49);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 49));
    const graph g = mobile_block(rng, 16);
    std::vector<tensor> inputs, expected;
    {
        executor_options one;
        one.num_threads = 1;
        executor ref(g, one);
        for (int i = 0; i < 4; ++i) {
            inputs.push_back(random_tensor({3, 16, 6, 20}, rng));
            expected.push_back(ref.run({inputs.back()})[0]);
        }
    }
    std::vector<std::thread> workers;
    std::vector<int> ok(4, 0);
    for (int w = 0; w < 4; ++w)
        workers.emplace_back([&, w] {
            executor_options two;
            two.num_threads = 2;
            executor ex(g, two);
            bool good = true;
            for (int r = 0; r < 5; ++r) good = good && all_close(ex.run({inputs[static_cast<std::size_t>(w)]})[0],
                                                                 expected[static_cast<std::size_t>(w)], 1e-5f, 1e-6f);
            ok[static_cast<std::size_t>(w)] = good ? 1 : 0;
        });
    for (auto& t : workers) t.join();
    for (int w = 0; w < 4; ++w) EXPECT_EQ(ok[static_cast<std::size_t>(w)], 1) << "worker " << w;
}

TEST(executor, profile_records_steps) {
    std::mt19937 rng(kSeed + 46);
    executor_options o;
    o.profile = true;
    executor ex(mobile_block(rng), o);
    const tensor x = random_tensor({1, 8, 6, 20}, rng);
    ex.run({x});
    ex.run({x});
    const auto prof = ex.profile();
    ASSERT_FALSE(prof.empty());
    for (const auto& p : prof) EXPECT_EQ(p.calls, 2) << p.label;
    const std::string table = ex.profile_table();
    EXPECT_NE(table.find("Conv"), std::string::npos) << table;
    EXPECT_NE(table.find("total"), std::string::npos);
    ex.reset_profile();
    EXPECT_EQ(ex.profile().front().calls, 0);
}

TEST(executor, errors_name_what_and_where) {
    // Unknown op
    graph g = single_op_graph("NoSuchOp", {tensor::zeros({2})}, {});
    try {
        executor ex(g);
        FAIL();
    } catch (const unsupported_error& e) {
        EXPECT_NE(std::string(e.what()).find("NoSuchOp"), std::string::npos);
    }
    // Undefined input
    graph u = single_op_graph("Relu", {tensor::zeros({2})}, {});
    u.nodes[0].inputs[0] = "ghost";
    try {
        executor ex(u);
        FAIL();
    } catch (const graph_error& e) {
        EXPECT_NE(std::string(e.what()).find("ghost"), std::string::npos);
    }
    // Cycle
    graph c;
    c.inputs.push_back(vinfo("x", {2}));
    c.nodes.push_back(make_node("Add", {"x", "b"}, {"a"}, {}, "n1"));
    c.nodes.push_back(make_node("Relu", {"a"}, {"b"}, {}, "n2"));
    c.outputs.push_back(vinfo("b", {2}));
    EXPECT_THROW(executor{c}, graph_error);
    // Inputs: missing, wrong dtype, wrong fixed dim, wrong count
    executor ex(chain_graph(2, 4));
    EXPECT_THROW(ex.run(std::map<std::string, tensor>{}), invalid_argument);
    EXPECT_THROW(ex.run({tensor::zeros({1, 4}, dtype::int64)}), invalid_argument);
    EXPECT_THROW(ex.run({tensor::zeros({1, 5})}), shape_error);
    EXPECT_THROW(ex.run(std::vector<tensor>{tensor::zeros({1, 4}), tensor::zeros({1, 4})}), invalid_argument);
    EXPECT_THROW(ex.run({{"x", tensor::zeros({1, 4})}}, {"not_a_value"}), invalid_argument);
    // Bad attribute values are reported when the executor is built, naming the node.
    try {
        executor bad(single_op_graph("Gelu", {tensor::zeros({2})}, {}, {{"approximate", std::string("fast")}}));
        FAIL();
    } catch (const unsupported_error& e) {
        EXPECT_NE(std::string(e.what()).find("the_Gelu"), std::string::npos);
    }
}

TEST(executor, runs_any_batch_size_with_symbolic_batch) {
    std::mt19937 rng(kSeed + 47);
    executor ex(mobile_block(rng));
    for (std::int64_t n : {1, 2, 7}) {
        const tensor y = ex.run({random_tensor({n, 8, 6, 20}, rng)})[0];
        EXPECT_EQ(y.shape(), (shape_t{n, 8, 3, 20}));
    }
}

}  // namespace
}  // namespace quantsim::test

namespace quantsim::test {
namespace {

// The kernels' thread pool must let the process exit right after it spawned workers, however late the OS starts
// them (a worker that started after the pool's destructor used to sleep forever, hanging exit). Each child process
// runs one parallel_for on many threads and exits at once; the parent gives each child 20 s.
TEST(thread_pool, process_exits_right_after_spawning_workers) {
    if (std::getenv("QUANTSIM_POOL_EXIT_CHILD")) {
        kernel_threads_scope scope(16);
        std::atomic<std::int64_t> sum{0};
        detail::parallel_for(64, [&](std::int64_t i) { sum += i; });
        ASSERT_EQ(sum.load(), 64 * 63 / 2);
        return;
    }
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    std::string cmd = "QUANTSIM_POOL_EXIT_CHILD=1 timeout 20 '";
    cmd.append(self).append("' --gtest_filter=thread_pool.process_exits_right_after_spawning_workers >/dev/null 2>&1");
    for (int i = 0; i < 30; ++i) {
        const int rc = std::system(cmd.c_str());
        ASSERT_EQ(rc, 0) << "child run " << i << " did not exit cleanly (status " << rc << "; 124<<8 = timed out)";
    }
}

}  // namespace
}  // namespace quantsim::test
