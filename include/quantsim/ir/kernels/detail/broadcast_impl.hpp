// for_each_broadcast: coalesces dims with the same broadcast pattern so that the innermost run is as long as
// possible, then walks the outer index space (in parallel when asked).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

namespace quantsim::detail {

template <class F>
void for_each_broadcast(const shape_t& out, const std::vector<const shape_t*>& inputs, bool parallel, F&& fn) {
    const int K = static_cast<int>(inputs.size());
    const int R = static_cast<int>(out.size());
    std::int64_t total = 1;
    for (auto d : out) total *= d;
    if (total == 0) return;
    // Per-dim strides of every input (0 where broadcast), right-aligned.
    std::vector<std::int64_t> dims(out.begin(), out.end());
    std::vector<std::array<std::int64_t, 3>> strides(static_cast<std::size_t>(R), {0, 0, 0});
    for (int k = 0; k < K; ++k) {
        const shape_t& s = *inputs[static_cast<std::size_t>(k)];
        const int r = static_cast<int>(s.size());
        std::int64_t st = 1;
        for (int i = r - 1; i >= 0; --i) {
            const int d = R - r + i;
            strides[static_cast<std::size_t>(d)][static_cast<std::size_t>(k)] = s[static_cast<std::size_t>(i)] == 1 ? 0 : st;
            st *= s[static_cast<std::size_t>(i)];
        }
    }
    // Drop size-1 dims, then merge dim i into i+1 when every input is contiguous across the pair.
    std::vector<std::int64_t> cd;
    std::vector<std::array<std::int64_t, 3>> cs;
    for (int i = 0; i < R; ++i) {
        if (dims[static_cast<std::size_t>(i)] == 1) continue;
        if (!cd.empty()) {
            bool merge = true;
            for (int k = 0; k < K; ++k) {
                const std::int64_t outer = cs.back()[static_cast<std::size_t>(k)];
                const std::int64_t inner = strides[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)];
                if (outer != inner * dims[static_cast<std::size_t>(i)]) merge = false;
            }
            if (merge) {
                cd.back() *= dims[static_cast<std::size_t>(i)];
                cs.back() = strides[static_cast<std::size_t>(i)];
                continue;
            }
        }
        cd.push_back(dims[static_cast<std::size_t>(i)]);
        cs.push_back(strides[static_cast<std::size_t>(i)]);
    }
    if (cd.empty()) {
        cd.push_back(1);
        cs.push_back({0, 0, 0});
    }
    const int cr = static_cast<int>(cd.size());
    const std::int64_t inner = cd.back();
    const std::int64_t outer = total / inner;
    auto run_outer = [&](std::int64_t o, std::int64_t q0, std::int64_t q1) {
        broadcast_run run{};
        run.out_offset = o * inner + q0;
        run.n = q1 - q0;
        std::int64_t rem = o;
        for (int k = 0; k < K; ++k) run.in_offset[k] = 0;
        for (int i = cr - 2; i >= 0; --i) {
            const std::int64_t idx = rem % cd[static_cast<std::size_t>(i)];
            rem /= cd[static_cast<std::size_t>(i)];
            for (int k = 0; k < K; ++k) run.in_offset[k] += idx * cs[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)];
        }
        for (int k = 0; k < K; ++k) {
            run.in_stride[k] = cs.back()[static_cast<std::size_t>(k)];
            run.in_offset[k] += q0 * run.in_stride[k];
        }
        fn(run);
    };
    const bool par = parallel && total >= 32768 && kernel_threads() > 1;
    if (!par) {
        for (std::int64_t o = 0; o < outer; ++o) run_outer(o, 0, inner);
        return;
    }
    if (outer >= 4 * kernel_threads()) {
        parallel_range(outer, 1, [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t o = b; o < e; ++o) run_outer(o, 0, inner);
        });
    } else {
        const std::int64_t parts = std::max<std::int64_t>(1, std::min<std::int64_t>(inner / 4096, 4 * kernel_threads()));
        parallel_for(outer * parts, [&](std::int64_t t) {
            const std::int64_t o = t / parts, s = t % parts;
            const std::int64_t q0 = inner * s / parts, q1 = inner * (s + 1) / parts;
            if (q0 < q1) run_outer(o, q0, q1);
        });
    }
}

}  // namespace quantsim::detail
