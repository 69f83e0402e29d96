// The executor: liveness-based freeing and peak bytes, hooks (capture, in-place modification, inputs, views),
// update_param, fusion equivalence, fetching intermediates, constant folding, threads, profiling and errors.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/kernels/conv.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

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
