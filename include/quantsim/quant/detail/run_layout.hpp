// How the optimized kernels walk a contiguous tensor: the shape is reduced to outer dimensions (each with a step
// in group index) and one innermost "row" whose elements use either one group (constant), consecutive groups
// (contiguous), or a table of group offsets (short rows folded together so vector loops stay long, e.g.
// per-channel NCHW with a 7x7 image, or per-channel along a non-last axis of small extent).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <quantsim/quant/detail/kernels.hpp>
#include <quantsim/quant/layout.hpp>

namespace quantsim::detail {

struct run_layout {
    struct dim {
        std::int64_t size;
        std::int64_t gstride;  ///< group-index step per index of this dimension
    };
    enum class row_kind : std::uint8_t { constant, contiguous, table };

    std::vector<dim> outer;  ///< outermost first; the row is innermost
    std::int64_t row = 1;
    row_kind kind = row_kind::constant;
    std::vector<std::int64_t> table;  ///< kind == table: group offset of each row element from the row's base
};

/// Rows shorter than this are folded with the next outer dimension, up to fold_cap elements per row.
inline constexpr std::int64_t fold_below = 64;
inline constexpr std::int64_t fold_cap = 16384;

/// `keep_last_axis`: rows never span more than one index of the axes before the last one (no merging or folding
/// across that boundary), so a caller may place each last-axis vector anywhere in memory (strided Eigen maps).
inline run_layout make_run_layout(const resolved_granularity& g, const shape_t& shape, bool keep_last_axis = false) {
    std::vector<run_layout::dim> d;
    std::size_t last_axis_begin = 0;
    for (int a = 0; a < static_cast<int>(shape.size()); ++a) {
        const std::int64_t n = shape[static_cast<std::size_t>(a)];
        if (a + 1 == static_cast<int>(shape.size())) last_axis_begin = d.size();
        if (g.kind == granularity_kind::per_channel && a == g.axis) {
            d.push_back({n, 1});
        } else if (g.kind == granularity_kind::per_block && a == g.axis) {
            d.push_back({n, g.num_blocks});
        } else if (g.kind == granularity_kind::per_block && a == g.block_axis) {
            d.push_back({g.num_blocks, 1});
            d.push_back({g.block_size, 0});
        } else {
            d.push_back({n, 0});
        }
    }
    // Drop unit dimensions and merge neighbours whose group steps line up (outer step = inner step * inner size).
    std::vector<run_layout::dim> m;
    std::size_t boundary = 0;  // with keep_last_axis: m[boundary..] come from the last axis
    for (std::size_t i = 0; i < d.size(); ++i) {
        const auto& x = d[i];
        if (keep_last_axis && i == last_axis_begin) boundary = m.size();
        if (x.size == 1) continue;
        const bool may_merge = !m.empty() && !(keep_last_axis && i >= last_axis_begin && m.size() == boundary);
        if (may_merge && m.back().gstride == x.gstride * x.size)
            m.back() = {m.back().size * x.size, x.gstride};
        else
            m.push_back(x);
    }
    if (keep_last_axis && m.size() == boundary) m.push_back({1, 0});  // the last axis has extent 1
    run_layout L;
    if (m.empty()) m.push_back({1, 0});
    L.row = m.back().size;
    const std::int64_t step = m.back().gstride;
    L.kind = step == 0 ? run_layout::row_kind::constant
             : step == 1 ? run_layout::row_kind::contiguous
                         : run_layout::row_kind::table;
    if (L.kind == run_layout::row_kind::table) {
        L.table.resize(static_cast<std::size_t>(L.row));
        for (std::int64_t j = 0; j < L.row; ++j) L.table[static_cast<std::size_t>(j)] = j * step;
    }
    m.pop_back();
    // Fold short rows into longer ones with a table of group offsets.
    while (!keep_last_axis && L.row < fold_below && !m.empty()) {
        auto& prev = m.back();
        std::int64_t f = std::min(prev.size, fold_cap / L.row);
        while (f > 1 && prev.size % f != 0) --f;
        if (f < 2) break;
        std::vector<std::int64_t> t(static_cast<std::size_t>(f * L.row));
        for (std::int64_t i = 0; i < f; ++i)
            for (std::int64_t j = 0; j < L.row; ++j) {
                const std::int64_t inner = L.kind == run_layout::row_kind::constant     ? 0
                                           : L.kind == run_layout::row_kind::contiguous ? j
                                                                                        : L.table[static_cast<std::size_t>(j)];
                t[static_cast<std::size_t>(i * L.row + j)] = i * prev.gstride + inner;
            }
        L.table = std::move(t);
        L.kind = run_layout::row_kind::table;
        L.row *= f;
        prev.size /= f;
        prev.gstride *= f;
        if (prev.size == 1) m.pop_back();
    }
    if (L.kind == run_layout::row_kind::table) {
        bool contiguous = true;
        for (std::int64_t j = 0; j < L.row && contiguous; ++j) contiguous = L.table[static_cast<std::size_t>(j)] == j;
        if (contiguous) L.kind = run_layout::row_kind::contiguous, L.table.clear();
    }
    L.outer = std::move(m);
    return L;
}

/// Calls fn(first_element, count, view) for consecutive runs covering [begin, end), where view is a const_view<C>
/// or an array_view<C> for exactly those elements. Table rows gather their groups into per-call buffers, reused
/// while consecutive rows share a base.
template <class C, class Fn>
void for_each_run(const run_layout& L, const group_table<C>& G, std::int64_t begin, std::int64_t end, Fn&& fn) {
    if (begin >= end) return;
    const std::size_t k = L.outer.size();
    std::vector<std::int64_t> idx(k, 0);
    std::int64_t row_index = begin / L.row, base = 0;
    for (std::size_t a = k; a-- > 0;) {
        idx[a] = row_index % L.outer[a].size;
        row_index /= L.outer[a].size;
        base += idx[a] * L.outer[a].gstride;
    }
    group_table<C> buf;
    std::int64_t buf_base = -1;
    std::int64_t i = begin, pos = begin % L.row;
    while (i < end) {
        const std::int64_t n = std::min(L.row - pos, end - i);
        switch (L.kind) {
            case run_layout::row_kind::constant: fn(i, n, const_at(G, base)); break;
            case run_layout::row_kind::contiguous: fn(i, n, array_at(G, base + pos)); break;
            case run_layout::row_kind::table:
                if (buf_base != base) {
                    buf.resize(static_cast<std::size_t>(L.row));
                    for (std::size_t j = 0; j < static_cast<std::size_t>(L.row); ++j) {
                        const auto s = static_cast<std::size_t>(base + L.table[j]);
                        buf.scale[j] = G.scale[s], buf.inv[j] = G.inv[s], buf.lo[j] = G.lo[s], buf.hi[j] = G.hi[s];
                        buf.zp[j] = G.zp[s], buf.gid[j] = G.gid[s];
                    }
                    buf_base = base;
                }
                fn(i, n, array_at(buf, pos));
                break;
        }
        i += n;
        pos = 0;
        for (std::size_t a = k; a-- > 0;) {  // odometer over the outer dimensions
            base += L.outer[a].gstride;
            if (++idx[a] < L.outer[a].size) break;
            base -= L.outer[a].gstride * L.outer[a].size;
            idx[a] = 0;
        }
    }
}

}  // namespace quantsim::detail
