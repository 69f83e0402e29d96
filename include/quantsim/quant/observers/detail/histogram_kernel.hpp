// The counting kernel of the exact histogram: bin index floor(x / 2^k), computed exactly, then counted.
//
// Exactness: for a float x and 2^-k a normal float, x * 2^-k is exact unless it underflows, and floor() of an
// exact value is exact. Underflow only happens for |x| far below one bin width; the true index is then 0 for
// x >= 0 and -1 for x < 0, which the kernel enforces (a negative x never gets an index above -1). Levels are
// kept where 2^-k is a normal float and |x| / 2^k < 2^31 (histogram_level), so the index fits an int32.
// The reference computes the same index in double, where it is exact for every float and every level used.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <quantsim/config.hpp>

namespace quantsim::detail {

/// Levels (log2 of the bin width) a histogram may use. Below -126 the scale 2^-k is no longer a float; such
/// fine bins (1e-38) are never needed. 128 is the coarsest level any float range needs with 2 bins.
constexpr int histogram_min_level = -126;
constexpr int histogram_max_level = 128;
/// Bins are never finer than 2^-31 of the largest magnitude seen, so indices fit an int32. At that resolution
/// every distinct float value already has a bin of its own (floats carry 24 bits), so nothing is lost.
constexpr int histogram_index_bits = 31;

/// floor(x / 2^k), exact (double holds x * 2^-k exactly for every float x and level k in range).
inline std::int64_t bin_index_ref(float x, int k) noexcept {
    return static_cast<std::int64_t>(std::floor(std::ldexp(static_cast<double>(x), -k)));
}

/// The smallest level k >= the index-width floor for which [mn, mx] spans at most max_bins bins of width 2^k
/// aligned at multiples of 2^k. Monotone in the range: a wider range never gets a finer level, which is what
/// makes re-binning on growth exact. Preconditions: mn <= mx, both finite, max_bins >= 2.
inline int histogram_level(float mn, float mx, std::size_t max_bins) noexcept {
    const double a = std::max(std::fabs(static_cast<double>(mn)), std::fabs(static_cast<double>(mx)));
    int e = histogram_min_level + histogram_index_bits;
    if (a > 0) std::frexp(a, &e);  // a < 2^e
    const int floor_level = std::max(e - histogram_index_bits, histogram_min_level);
    const auto fits = [&](int k) {
        return bin_index_ref(mx, k) - bin_index_ref(mn, k) + 1 <= static_cast<std::int64_t>(max_bins);
    };
    int k = floor_level;
    const double width = static_cast<double>(mx) - static_cast<double>(mn);
    if (width > 0) {
        int w = 0;
        std::frexp(width / static_cast<double>(max_bins), &w);
        k = std::clamp(w - 2, floor_level, histogram_max_level);
    }
    while (k < histogram_max_level && !fits(k)) ++k;
    while (k > floor_level && fits(k - 1)) --k;
    return k;
}

/// Reference: counts[floor(x/2^k) - first] += 1 for x in x[0, n). Indices outside [0, nbins) are clamped (they
/// cannot occur when the caller extended the histogram to the data's range first).
inline void histogram_count_ref(const float* x, std::size_t n, int k, std::int64_t first, std::size_t nbins,
                                std::uint64_t* counts) noexcept {
    const std::int64_t last = static_cast<std::int64_t>(nbins) - 1;
    for (std::size_t i = 0; i < n; ++i) counts[std::clamp(bin_index_ref(x[i], k) - first, std::int64_t{0}, last)]++;
}

/// Sampled counting (exact_histogram's `sample` s = 1, 2, 4, 8 or 16) counts one 16-value group in s of each
/// 16384-value chunk: the 1024 / s groups that come first in a fixed pseudo-random order of the chunk's 1024 groups
/// (so the 1/16 groups are among the 1/8 ones, and so on), rotated by `rot` groups, which the caller derives from the
/// chunk's data. Scattered and rotated groups matter: a regular or fixed pattern meets the same channels or columns
/// in every add of a same-shaped value and skewed the sample.
constexpr std::size_t histogram_sample_group = 16;
constexpr std::size_t histogram_sample_period = 16384;
constexpr std::size_t histogram_sample_groups = histogram_sample_period / histogram_sample_group;

/// Offsets (in values, ascending) of the groups counted in one chunk at sampling s (s > 1), before rotation.
inline const std::vector<std::uint32_t>& sampled_group_offsets(std::size_t s) {
    static const auto tables = [] {
        std::vector<std::uint32_t> order(histogram_sample_groups);
        for (std::size_t g = 0; g < order.size(); ++g) order[g] = static_cast<std::uint32_t>(g);
        std::uint64_t state = 0x9E3779B97F4A7C15ull;  // fixed: the pattern is part of the histogram's definition
        for (std::size_t g = order.size() - 1; g > 0; --g) {  // Fisher-Yates with splitmix64
            state += 0x9E3779B97F4A7C15ull;
            std::uint64_t z = state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            std::swap(order[g], order[static_cast<std::size_t>(z % (g + 1))]);
        }
        std::vector<std::vector<std::uint32_t>> t(5);  // index log2(s)
        for (std::size_t l = 1; l < t.size(); ++l) {
            t[l].assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(order.size() >> l));
            for (auto& o : t[l]) o *= static_cast<std::uint32_t>(histogram_sample_group);
            std::sort(t[l].begin(), t[l].end());
        }
        return t;
    }();
    std::size_t l = 0;
    while ((std::size_t{2} << l) <= s && l + 1 < tables.size()) ++l;
    return tables[l];
}

/// The rotation (in groups) of a chunk whose values span [mn, mx]: a hash of the two floats' bits, so it changes
/// from chunk to chunk with the data, and is the same wherever the chunk is counted (threads, workers).
inline std::uint32_t sampled_rotation(float mn, float mx) noexcept {
    std::uint32_t a, b;
    std::memcpy(&a, &mn, sizeof a);
    std::memcpy(&b, &mx, sizeof b);
    std::uint64_t z = (static_cast<std::uint64_t>(a) << 32 | b) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return static_cast<std::uint32_t>((z ^ (z >> 31)) % histogram_sample_groups);
}

/// Calls f(begin, length) for each counted group of one chunk x[0, n) (n <= 16384) at sampling s and rotation rot
/// (one call for all of it when s = 1); groups come in no particular order.
template <class F>
void for_each_sampled_group(std::size_t n, std::size_t s, std::uint32_t rot, F&& f) {
    if (s <= 1) {
        if (n) f(std::size_t{0}, n);
        return;
    }
    const std::size_t shift = std::size_t{rot} * histogram_sample_group;
    for (std::uint32_t o : sampled_group_offsets(s)) {
        const std::size_t b = (o + shift) % histogram_sample_period;
        if (b < n) f(b, std::min(histogram_sample_group, n - b));
    }
}

/// How many values of a chunk of n sampling s with rotation rot counts.
inline std::size_t sampled_size(std::size_t n, std::size_t s, std::uint32_t rot) {
    if (s <= 1) return n;
    if (n == histogram_sample_period) return n / s;  // a whole chunk: the pattern's size, whatever the rotation
    std::size_t c = 0;
    for_each_sampled_group(n, s, rot, [&](std::size_t, std::size_t len) { c += len; });
    return c;
}

/// Per-thread scratch for the sub-histograms (not part of any observer's state): all zeros between uses (users
/// flush, or zero, every bin they counted into), so a use need not clear all of it first. At least n entries.
inline std::vector<std::uint32_t>& histogram_scratch(std::size_t n) {
    thread_local std::vector<std::uint32_t> buf;
    if (buf.size() < n) buf.assign(n, 0u);
    return buf;
}

/// Index of one value with the float fast path (k <= 126). Same result as bin_index_ref(x, k) - first.
QUANTSIM_ALWAYS_INLINE std::int32_t bin_offset(float x, float scale, std::int32_t first, std::int32_t last) noexcept {
    std::int32_t g = static_cast<std::int32_t>(std::floor(x * scale));
    if (x < 0.0f && g > -1) g = -1;  // x * scale underflowed to -0
    return std::clamp(g - first, std::int32_t{0}, last);
}

/// Independent sub-histograms (uint32, `stride` apart) hide the store-to-load latency of repeated bins.
constexpr std::size_t histogram_lanes = 4;

/// Distance between sub-histograms for nbins bins: padded so that the lanes' copies of one bin are not a multiple
/// of 4 KiB apart (2048 bins unpadded are exactly 8 KiB: the CPU then takes a load of one lane's bin for a
/// possible reload of another lane's pending store (4K aliasing) and runs of one bin were twice as slow).
constexpr std::size_t histogram_sub_stride(std::size_t nbins) noexcept { return (nbins + 15) / 16 * 16 + 16; }

/// Counts x[0, n) into the sub-histograms sub[lane * stride + bin] (bins [first, first + nbins) at level k <= 126):
/// every value, or with s > 1 the groups of one chunk (n <= 16384) that sampling s with rotation rot selects. Each
/// sub-count grows by at most n: callers flush before 2^32.
/// `prefetch` (optional, `prefetch_n` floats): data the caller reads next; it is pulled into the cache while this
/// (compute-bound) loop runs, so streaming large inputs overlaps memory reads with counting.
inline void histogram_count_sub(const float* QUANTSIM_RESTRICT x, std::size_t n, int k, std::int64_t first,
                                std::size_t nbins, std::size_t stride, std::uint32_t* QUANTSIM_RESTRICT sub,
                                std::size_t s = 1, std::uint32_t rot = 0, const float* prefetch = nullptr,
                                std::size_t prefetch_n = 0) {
    s = std::max<std::size_t>(s, 1);
    const float scale = std::ldexp(1.0f, -k);
    const auto first32 = static_cast<std::int32_t>(first);
    const auto last32 = static_cast<std::int32_t>(nbins - 1);
    std::uint32_t* QUANTSIM_RESTRICT h0 = sub;
    std::uint32_t* QUANTSIM_RESTRICT h1 = h0 + stride;
    std::uint32_t* QUANTSIM_RESTRICT h2 = h1 + stride;
    std::uint32_t* QUANTSIM_RESTRICT h3 = h2 + stride;
    std::size_t i = 0;
    std::size_t tail_s = s;  // sampling of what is left after the vector loops
#if !defined(__AVX512F__)
    (void)prefetch, (void)prefetch_n;
#else
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512 zero = _mm512_setzero_ps();
    const __m512i vfirst = _mm512_set1_epi32(first32), vlast = _mm512_set1_epi32(last32);
    const __m512i vzero = _mm512_setzero_si512(), vm1 = _mm512_set1_epi32(-1);
    // Bins of 0 and of the top of the range: exact zeros (Relu, Clip, hard-swish) and clipped maxima repeat so
    // often that incrementing them one by one is a chain of store-to-load dependencies; when a sample says they
    // are common, lanes in them are counted by popcount and only the others are incremented.
    const std::int32_t zero_bin = std::clamp(-first32, std::int32_t{0}, last32);
    const __m512i vzbin = _mm512_set1_epi32(zero_bin);
    // The sample is vectorized like the loop below: a scalar one cost as much as counting 1024 values.
    const auto bins_of = [&](__m512 v) {
        // Masked forms with an explicit source (GCC 12's unmasked ones trip -Wmaybe-uninitialized).
        __m512i g = _mm512_mask_cvt_roundps_epi32(vzero, 0xFFFF, _mm512_mul_ps(v, vs),
                                                  _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        g = _mm512_mask_min_epi32(g, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), g, vm1);
        g = _mm512_sub_epi32(g, vfirst);
        g = _mm512_mask_max_epi32(g, 0xFFFF, g, vzero);
        return _mm512_mask_min_epi32(g, 0xFFFF, g, vlast);
    };
    bool hot = false;
    if (n >= 1024) {
        int in_hot = 0;
        for (std::size_t j = 0; j < 256; j += 16) {
            const __m512i g = bins_of(_mm512_loadu_ps(x + j));
            in_hot += __builtin_popcount(static_cast<__mmask16>(_mm512_cmpeq_epi32_mask(g, vzbin) |
                                                                _mm512_cmpeq_epi32_mask(g, vlast)));
        }
        hot = in_hot >= 64;
    }
    std::uint64_t n_zero = 0, n_last = 0;
    alignas(64) std::uint32_t idx[64 + 16];
    // Bins of the 16 values at p into idx[m...] (hot ones counted apart).
    const auto put = [&](const float* p, std::size_t& m) {
        const __m512i g = bins_of(_mm512_loadu_ps(p));
        if (hot) {
            const __mmask16 z = _mm512_cmpeq_epi32_mask(g, vzbin), l = _mm512_cmpeq_epi32_mask(g, vlast);
            n_zero += static_cast<std::uint64_t>(__builtin_popcount(z));
            n_last += static_cast<std::uint64_t>(__builtin_popcount(static_cast<__mmask16>(l & ~z)));
            const auto keep = static_cast<__mmask16>(~(z | l));
            _mm512_storeu_si512(reinterpret_cast<__m512i*>(idx + m), _mm512_maskz_compress_epi32(keep, g));
            m += static_cast<std::size_t>(__builtin_popcount(keep));
        } else {
            _mm512_storeu_si512(reinterpret_cast<__m512i*>(idx + m), g);
            m += 16;
        }
    };
    const auto scatter = [&](std::size_t m) {
        // Read the indices back from memory: left alone, GCC keeps them in the vector register and extracts each
        // lane (vpextrd, 2 uops on the shuffle port), which made this loop ~10-25% slower than plain loads.
        const std::uint32_t* QUANTSIM_RESTRICT ix = idx;
#if defined(__GNUC__)
        asm volatile("" : "+r"(ix) : : "memory");
#endif
        std::size_t j = 0;
        for (; j + 4 <= m; j += 4) {
            h0[ix[j]]++;
            h1[ix[j + 1]]++;
            h2[ix[j + 2]]++;
            h3[ix[j + 3]]++;
        }
        for (; j < m; ++j) h0[ix[j]]++;
    };
    if (s == 1) {
        const char* pf = reinterpret_cast<const char*>(prefetch);
        const char* const pf_end = pf + prefetch_n * sizeof(float);
        for (; i + 64 <= n; i += 64) {
            if (pf < pf_end) {  // 256 bytes of the next data per 256 bytes counted
                for (int c = 0; c < 4; ++c) _mm_prefetch(pf + 64 * c, _MM_HINT_T0);
                pf += 256;
            }
            std::size_t m = 0;
            for (int h = 0; h < 4; ++h) put(x + i + 16 * h, m);
            scatter(m);
        }
    } else {
        // The counted groups; the one group that may cross n is left to the scalar tail.
        static_assert(histogram_sample_group == 16, "one put() per group");
        std::size_t m = 0;
        i = n;
        for_each_sampled_group(n, s, rot, [&](std::size_t b, std::size_t len) {
            if (len < histogram_sample_group) {
                i = b;
                return;
            }
            put(x + b, m);
            if (m > 48) {
                scatter(m);
                m = 0;
            }
        });
        scatter(m);
        tail_s = 1;  // [i, n) is one counted group (or empty)
        (void)prefetch, (void)prefetch_n;  // sampled data was just scanned for min/max: it is in the cache
    }
    h0[zero_bin] += static_cast<std::uint32_t>(n_zero);
    h0[last32] += static_cast<std::uint32_t>(n_last);
#endif
    // The rest: all of it without AVX-512, else what the vector loops left (s = 1: the last < 64 values; s > 1:
    // the group that crosses n, if one does).
    const auto rest = [&](std::size_t b, std::size_t len) {
        const float* QUANTSIM_RESTRICT y = x + i + b;  // i = 0 when groups are sampled here
        std::size_t j = 0;
        for (; j + 4 <= len; j += 4) {
            h0[bin_offset(y[j], scale, first32, last32)]++;
            h1[bin_offset(y[j + 1], scale, first32, last32)]++;
            h2[bin_offset(y[j + 2], scale, first32, last32)]++;
            h3[bin_offset(y[j + 3], scale, first32, last32)]++;
        }
        for (; j < len; ++j) h0[bin_offset(y[j], scale, first32, last32)]++;
    };
    if (tail_s == 1)
        rest(0, n - i);
    else
        for_each_sampled_group(n, s, rot, rest);
}

/// counts[b] += the sub-histograms' counts of bin b for b in [lo, hi) (the bins counted into since the last flush);
/// those sub-histogram bins are zeroed. The lanes are summed in 32 bits first (their total is at most the values
/// counted since the last flush, which callers keep below 2^32), so counts, which are cold when calibration
/// interleaves hundreds of histograms, are read and written once instead of once per lane.
inline void histogram_flush_sub(std::size_t lo, std::size_t hi, std::size_t stride,
                                std::uint32_t* QUANTSIM_RESTRICT sub, std::uint64_t* QUANTSIM_RESTRICT counts) noexcept {
    std::uint32_t* QUANTSIM_RESTRICT h0 = sub;
    std::uint32_t* QUANTSIM_RESTRICT h1 = h0 + stride;
    std::uint32_t* QUANTSIM_RESTRICT h2 = h1 + stride;
    std::uint32_t* QUANTSIM_RESTRICT h3 = h2 + stride;
    static_assert(histogram_lanes == 4);
    for (std::size_t b = lo; b < hi; ++b) {
        counts[b] += std::uint64_t{h0[b] + h1[b] + h2[b] + h3[b]};
        h0[b] = h1[b] = h2[b] = h3[b] = 0;
    }
}

/// Counts x[0, n) into counts (bins [first, first + nbins) at level k). Same result as histogram_count_ref.
inline void histogram_count(const float* QUANTSIM_RESTRICT x, std::size_t n, int k, std::int64_t first,
                            std::size_t nbins, std::uint64_t* QUANTSIM_RESTRICT counts) {
    if (k > 126 || k < histogram_min_level) {  // 2^-k would be a subnormal float: exact double path
        histogram_count_ref(x, n, k, first, nbins, counts);
        return;
    }
    if (n < 4 * nbins) {  // too few values to pay for zeroing and flushing sub-histograms
        const float scale = std::ldexp(1.0f, -k);
        const auto first32 = static_cast<std::int32_t>(first);
        const auto last32 = static_cast<std::int32_t>(nbins - 1);
        for (std::size_t i = 0; i < n; ++i) counts[bin_offset(x[i], scale, first32, last32)]++;
        return;
    }
    const std::size_t stride = histogram_sub_stride(nbins);
    auto& scratch = histogram_scratch(histogram_lanes * stride);
    constexpr std::size_t chunk = std::size_t{1} << 30;  // keeps the lanes' total below 2^32
    for (std::size_t base = 0; base < n; base += chunk) {
        histogram_count_sub(x + base, std::min(chunk, n - base), k, first, nbins, stride, scratch.data());
        histogram_flush_sub(0, nbins, stride, scratch.data(), counts);
    }
}

}  // namespace quantsim::detail
