// How the optimized kernels walk a contiguous tensor: the shape is reduced to outer dimensions (each with a step
// in group index) and one innermost "row" whose elements use either one group (constant), consecutive groups
// (contiguous), or a table of group offsets (short rows folded together so vector loops stay long, e.g.
// per-channel NCHW with a 7x7 image, or per-channel along a non-last axis of small extent).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <quantsim/quant/detail/kernels.hpp>
#include <quantsim/quant/detail/stream_store.hpp>
#include <quantsim/quant/layout.hpp>

namespace quantsim::detail {

struct run_layout {
    struct dim {
        std::int64_t size;
        std::int64_t gstride;  ///< group-index step per index of this dimension
    };
    enum class row_kind : std::uint8_t { constant, contiguous, table, blocked };

    std::vector<dim> outer;  ///< outermost first; the row is innermost
    std::int64_t row = 1;
    row_kind kind = row_kind::constant;
    std::vector<std::int64_t> table;  ///< kind == table: group offset of each row element from the row's base
    std::int64_t block = 0;           ///< kind == blocked: consecutive groups each cover `block` elements
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
    // Short constant rows whose outer neighbour steps the group by one (per-block along the last axis: blocks of
    // 32 / 64 / 128 with consecutive groups) become long "blocked" rows: no per-block walking overhead.
    if (L.kind == run_layout::row_kind::constant && L.row < stream_span && !m.empty() && m.back().gstride == 1 &&
        !keep_last_axis) {
        auto& prev = m.back();
        std::int64_t f = std::min(prev.size, std::max<std::int64_t>(1, fold_cap / L.row));
        while (f > 1 && prev.size % f != 0) --f;
        // If the fold would leave only group-constant outer dimensions, every row uses the same groups: the table
        // fold below (gathered once) serves that better.
        bool periodic_after = prev.size / f == 1;
        for (std::size_t a = 0; a + 1 < m.size(); ++a) periodic_after = periodic_after && m[a].gstride == 0;
        if (f >= 2 && !periodic_after) {
            L.kind = run_layout::row_kind::blocked;
            L.block = L.row;
            L.row *= f;
            prev.size /= f;
            prev.gstride *= f;
            if (prev.size == 1) m.pop_back();
        }
    }
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
                                           : L.kind == run_layout::row_kind::blocked    ? j / L.block
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

/// Walks the runs of a layout from a starting element. step(limit, fn) calls fn(first_element, count, view) for
/// the next piece (at most `limit` elements, never crossing a row), where view is a const_view<C> or an
/// array_view<C> for exactly those elements, and returns count. Table rows gather their groups into a buffer that is
/// reused while consecutive rows share a base.
template <class C>
class run_cursor {
public:
    run_cursor(const run_layout& L, const group_table<C>& G, std::int64_t begin)
        : L_(L), G_(G), idx_(L.outer.size(), 0), pos_(begin % L.row) {
        std::int64_t row_index = begin / L.row;
        for (std::size_t a = L.outer.size(); a-- > 0;) {
            idx_[a] = row_index % L.outer[a].size;
            row_index /= L.outer[a].size;
            base_ += idx_[a] * L.outer[a].gstride;
        }
        first_ = begin;
    }

    /// Elements left in the current row.
    std::int64_t row_remaining() const noexcept { return L_.row - pos_; }
    /// For blocked rows: the group of the current element and its offset within that group's block.
    std::int64_t block_group() const noexcept { return base_ + pos_ / L_.block; }
    std::int64_t block_offset() const noexcept { return pos_ % L_.block; }
    /// Moves past the next min(limit, row_remaining()) elements without visiting them; returns that count.
    std::int64_t skip(std::int64_t limit) {
        return step(limit, [](std::int64_t, std::int64_t, const auto&) {});
    }

    template <class Fn>
    std::int64_t step(std::int64_t limit, Fn&& fn) {
        const std::int64_t n = std::min(L_.row - pos_, limit);
        switch (L_.kind) {
            case run_layout::row_kind::constant: fn(first_, n, const_at(G_, base_)); break;
            case run_layout::row_kind::contiguous: fn(first_, n, array_at(G_, base_ + pos_)); break;
            case run_layout::row_kind::table:
                if (buf_base_ != base_) gather();
                fn(first_, n, array_at(buf_, pos_));
                break;
            case run_layout::row_kind::blocked: {
                std::int64_t g = base_ + pos_ / L_.block, len = std::min(n, L_.block - pos_ % L_.block);
                for (std::int64_t j = 0; j < n; j += len, len = std::min(L_.block, n - j), ++g)
                    fn(first_ + j, len, const_at(G_, g));
                break;
            }
        }
        first_ += n;
        pos_ += n;
        if (pos_ == L_.row) {
            pos_ = 0;
            for (std::size_t a = L_.outer.size(); a-- > 0;) {  // odometer over the outer dimensions
                base_ += L_.outer[a].gstride;
                if (++idx_[a] < L_.outer[a].size) break;
                base_ -= L_.outer[a].gstride * L_.outer[a].size;
                idx_[a] = 0;
            }
        }
        return n;
    }

private:
    void gather() {
        buf_.resize(static_cast<std::size_t>(L_.row));
        for (std::size_t j = 0; j < static_cast<std::size_t>(L_.row); ++j) {
            const auto s = static_cast<std::size_t>(base_ + L_.table[j]);
            buf_.scale[j] = G_.scale[s], buf_.inv[j] = G_.inv[s], buf_.lo[j] = G_.lo[s], buf_.hi[j] = G_.hi[s];
            buf_.zp[j] = G_.zp[s], buf_.gid[j] = G_.gid[s];
        }
        buf_base_ = base_;
    }

    const run_layout& L_;
    const group_table<C>& G_;
    std::vector<std::int64_t> idx_;
    std::int64_t base_ = 0, pos_ = 0, first_ = 0;
    group_table<C> buf_;
    std::int64_t buf_base_ = -1;
};

/// Fake-quant of elements [begin, end) out of place with streaming stores, in blocks of stream_block elements that
/// end on 64-byte boundaries of y. A block inside one run goes straight to y with vector non-temporal stores (when
/// available); a block spanning runs is computed into an L1 buffer and streamed out. x is prefetched ahead.
template <rounding_mode R, scale_arithmetic A, class C>
void fq_range_streamed(const float* QUANTSIM_RESTRICT x, float* QUANTSIM_RESTRICT y, const run_layout& L,
                       const group_table<C>& G, std::int64_t begin, std::int64_t end, std::uint64_t key) {
    alignas(64) float buf[stream_block];
    // End of the block starting at i: at most `len` elements, on a 64-byte boundary of y unless it is the range end
    // (so non-temporal and ordinary stores never share a cache line); prefetches x ahead for short blocks.
    const auto block_end = [&](std::int64_t i, std::int64_t len = stream_block) {
        std::int64_t c = std::min(end, i + len);
        if (c < end) {
            const auto misaligned =
                static_cast<std::int64_t>((reinterpret_cast<std::uintptr_t>(y + c) & 63) / sizeof(float));
            if (c - misaligned > i) c -= misaligned;
        }
        if (len == stream_block && c + prefetch_distance <= end)
            for (std::int64_t l = 0; l < c - i; l += 16) QUANTSIM_PREFETCH(x + i + prefetch_distance + l, 0);
        return c;
    };
    // Periodic layouts (every row uses the same groups: per-channel on the last axes, folded NCHW) get the row's
    // groups extended by one block, so any block is a single contiguous view, whatever its alignment to rows.
    bool periodic = L.kind != run_layout::row_kind::constant;
    for (const auto& d : L.outer) periodic = periodic && d.gstride == 0;
#if QUANTSIM_VECTOR_NT
    if constexpr (std::is_same_v<C, float>) {
        // Rows of whole 8-lane vectors: walk one row of groups cyclically (it stays in L1).
        if (periodic && L.row % 8 == 0 && begin % 8 == 0 && (reinterpret_cast<std::uintptr_t>(y) & 31) == 0) {
            group_table<C> one;
            one.resize(static_cast<std::size_t>(L.row));
            for (std::int64_t r = 0; r < L.row; ++r) {
                const std::int64_t g = L.kind == run_layout::row_kind::table     ? L.table[static_cast<std::size_t>(r)]
                                       : L.kind == run_layout::row_kind::blocked ? r / L.block
                                                                                 : r;
                const const_view<C> v = const_at(G, g);
                const auto e = static_cast<std::size_t>(r);
                one.scale[e] = v.s_, one.inv[e] = v.inv_, one.lo[e] = v.lo_, one.hi[e] = v.hi_;
                one.zp[e] = v.zp_, one.gid[e] = v.gid_;
            }
            std::int64_t i = begin;
            // The first block brings y to a 64-byte boundary (through the staging buffer).
            const auto one_element = [&](std::int64_t k) {
                const auto v = array_at(one, k % L.row);
                return grid_value<R, A, C>(x[k], v, 0, key, static_cast<std::uint64_t>(k)) * v.s(0);
            };
            if ((reinterpret_cast<std::uintptr_t>(y + i) & 63) != 0) {
                const std::int64_t c = block_end(i);
                for (std::int64_t k = i; k < c; ++k) buf[k - i] = one_element(k);
                stream_copy(y + i, buf, c - i);
                i = c;
            }
            // y is 32-byte aligned, so a 64-byte boundary of y is at a multiple of 8 elements.
            if (i < end)
                fq_run_nt_periodic<R, A>(x + i, y + i, end - i, array_at(one, 0), L.row, i % L.row, key,
                                         static_cast<std::uint64_t>(i), end - i);
            stream_fence();
            return;
        }
    }
#endif
    if (periodic) {
        group_table<C> ext;
        // Short spans keep the extended arrays small (L1) for short rows.
        const std::int64_t span = stream_span;
        ext.resize(static_cast<std::size_t>(L.row + span));
        for (std::int64_t j = 0; j < L.row + span; ++j) {
            const std::int64_t r = j % L.row;
            const auto g = static_cast<std::size_t>(L.kind == run_layout::row_kind::table     ? L.table[static_cast<std::size_t>(r)]
                                                    : L.kind == run_layout::row_kind::blocked ? r / L.block
                                                                                              : r);
            const auto e = static_cast<std::size_t>(j);
            const const_view<C> v = const_at(G, static_cast<std::int64_t>(g));
            ext.scale[e] = v.s_, ext.inv[e] = v.inv_, ext.lo[e] = v.lo_, ext.hi[e] = v.hi_;
            ext.zp[e] = v.zp_, ext.gid[e] = v.gid_;
        }
        for (std::int64_t i = begin; i < end;) {
#if QUANTSIM_VECTOR_NT
            if constexpr (std::is_same_v<C, float>) {
                const std::int64_t c = block_end(i, span);
                fq_run_nt<R, A>(x + i, y + i, c - i, array_at(ext, i % L.row), key, static_cast<std::uint64_t>(i), 1,
                                end - i);
                i = c;
                continue;
            }
#endif
            const std::int64_t c = block_end(i);
            const auto view = array_at(ext, i % L.row);
            fq_run<R, A, C>(x + i, buf, c - i, view, key, static_cast<std::uint64_t>(i), 1);
            stream_copy(y + i, buf, c - i);
            i = c;
        }
        stream_fence();
        return;
    }
    run_cursor<C> cursor(L, G, begin);
    std::int64_t i = begin;
    while (i < end) {
#if QUANTSIM_VECTOR_NT
        if constexpr (std::is_same_v<C, float>) {
            // A long run streams directly; blocked rows only when every block is whole, aligned cache lines.
            const bool lines = L.kind != run_layout::row_kind::blocked ||
                               ((reinterpret_cast<std::uintptr_t>(y + i) & 63) == 0 && L.block % 16 == 0);
            if (L.kind == run_layout::row_kind::blocked && lines && L.block % 8 == 0 && cursor.block_offset() % 8 == 0) {
                const std::int64_t g = cursor.block_group(), off = cursor.block_offset();
                const std::int64_t first = i, count = cursor.skip(end - i);
                fq_run_nt_blocked<R, A>(x + first, y + first, count, G, g, off, L.block, key,
                                        static_cast<std::uint64_t>(first), end - first);
                i += count;
                continue;
            }
            if (cursor.row_remaining() >= stream_span && lines) {
                i += cursor.step(end - i, [&](std::int64_t first, std::int64_t count, const auto& view) {
                    fq_run_nt<R, A>(x + first, y + first, count, view, key, static_cast<std::uint64_t>(first), 1,
                                    end - first);
                });
                continue;
            }
        }
#endif
        const std::int64_t c = block_end(i);
        bool direct = false;
        std::int64_t j = i;
        // (a blocked row calls back once per block, so a step may cover several pieces)
        j += cursor.step(c - i, [&](std::int64_t first, std::int64_t count, const auto& view) {
#if QUANTSIM_VECTOR_NT
            if constexpr (std::is_same_v<C, float>) {
                if (first == i && count == c - i) {
                    fq_run_nt<R, A>(x + first, y + first, count, view, key, static_cast<std::uint64_t>(first), 1, 0);
                    direct = true;
                    return;
                }
            }
#endif
            fq_run<R, A, C>(x + first, buf + (first - i), count, view, key, static_cast<std::uint64_t>(first), 1);
        });
        while (j < c)
            j += cursor.step(c - j, [&](std::int64_t first, std::int64_t count, const auto& view) {
                fq_run<R, A, C>(x + first, buf + (first - i), count, view, key, static_cast<std::uint64_t>(first), 1);
            });
        if (!direct) stream_copy(y + i, buf, c - i);
        i = c;
    }
    stream_fence();
}

/// Whether walking this layout reads per-element group arrays (else a sparse group_table suffices).
inline bool needs_group_arrays(const run_layout& L) {
    return L.kind == run_layout::row_kind::contiguous || L.kind == run_layout::row_kind::table;
}

/// Calls fn(first_element, count, view) for consecutive runs covering [begin, end) (see run_cursor).
template <class C, class Fn>
void for_each_run(const run_layout& L, const group_table<C>& G, std::int64_t begin, std::int64_t end, Fn&& fn) {
    if (begin >= end) return;
    run_cursor<C> cursor(L, G, begin);
    for (std::int64_t i = begin; i < end;) i += cursor.step(end - i, fn);
}

}  // namespace quantsim::detail
