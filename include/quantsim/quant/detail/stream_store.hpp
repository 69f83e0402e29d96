// Non-temporal (streaming) stores for large out-of-place outputs. A DRAM-bound kernel that writes through the cache
// first reads every output line (read-for-ownership): 1.5x the traffic of a streaming memcpy. Large outputs are
// therefore streamed: with GCC/Clang vector extensions on AVX machines the kernel itself stores 8 floats at a time
// with vmovntps (fq_run_nt in kernels.hpp), elsewhere it computes a short chunk into an L1 buffer and streams that.
#pragma once

#include <cstdint>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <quantsim/config.hpp>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__AVX__)
#define QUANTSIM_VECTOR_NT 1
#else
#define QUANTSIM_VECTOR_NT 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define QUANTSIM_PREFETCH(address, rw) __builtin_prefetch((address), (rw))
#else
#define QUANTSIM_PREFETCH(address, rw) ((void)0)
#endif

namespace quantsim::detail {

/// Outputs at least this large (bytes) are streamed: beyond L2 and a good part of L3, so keeping them cached buys
/// little (glibc's memcpy switches to non-temporal stores at a similar size). Mutable so tests can force either path.
inline std::int64_t& stream_threshold_bytes() noexcept {
    static std::int64_t bytes = std::int64_t{16} << 20;
    return bytes;
}
/// Floats per streamed block (512 bytes: 8 cache lines). Small blocks keep computing and streaming interleaved.
inline constexpr std::int64_t stream_block = 128;
/// Floats per call of the direct (vector non-temporal) kernel on periodic layouts; runs at least this long are
/// streamed directly in one call.
inline constexpr std::int64_t stream_span = 2048;
/// Software prefetch distance of streaming loops, in floats (hardware prefetchers alone leave DRAM under-used when
/// one core both computes and streams).
inline constexpr std::int64_t prefetch_distance = 1024;

/// Copies n floats from src (any alignment) to dst with non-temporal stores where the ISA has them.
inline void stream_copy(float* QUANTSIM_RESTRICT dst, const float* QUANTSIM_RESTRICT src, std::int64_t n) {
    std::int64_t j = 0;
#if defined(__AVX512F__)
    for (; j < n && (reinterpret_cast<std::uintptr_t>(dst + j) & 63) != 0; ++j) dst[j] = src[j];
    for (; j + 16 <= n; j += 16) _mm512_stream_ps(dst + j, _mm512_loadu_ps(src + j));
#elif defined(__AVX__)
    for (; j < n && (reinterpret_cast<std::uintptr_t>(dst + j) & 31) != 0; ++j) dst[j] = src[j];
    for (; j + 8 <= n; j += 8) _mm256_stream_ps(dst + j, _mm256_loadu_ps(src + j));
#elif defined(__SSE2__)
    for (; j < n && (reinterpret_cast<std::uintptr_t>(dst + j) & 15) != 0; ++j) dst[j] = src[j];
    for (; j + 4 <= n; j += 4) _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
#endif
    for (; j < n; ++j) dst[j] = src[j];
}

/// Orders this thread's streaming stores before anything it does next (call once after streaming).
inline void stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

}  // namespace quantsim::detail
