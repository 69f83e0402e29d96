// Compile-time configuration shared by every quantsim header: version, OpenMP detection, assertions.
#pragma once

#include <quantsim/version.hpp>

#if defined(_OPENMP)
#include <omp.h>
#define QUANTSIM_HAS_OPENMP 1
#else
#define QUANTSIM_HAS_OPENMP 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define QUANTSIM_RESTRICT __restrict__
#define QUANTSIM_LIKELY(x) __builtin_expect(!!(x), 1)
#define QUANTSIM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define QUANTSIM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define QUANTSIM_RESTRICT
#define QUANTSIM_LIKELY(x) (x)
#define QUANTSIM_UNLIKELY(x) (x)
#define QUANTSIM_ALWAYS_INLINE inline
#endif

// Internal precondition checks (programming errors, not user input). Users may define their own before including
// quantsim; tests may redefine it to throw. User input is always checked with exceptions, never with this.
#ifndef QUANTSIM_ASSERT
#include <cassert>
#define QUANTSIM_ASSERT(cond, msg) assert((cond) && (msg))
#endif

namespace quantsim {

/// Number of threads quantsim's parallel kernels use by default (OpenMP's maximum, or 1 without OpenMP).
inline int default_num_threads() noexcept {
#if QUANTSIM_HAS_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

}  // namespace quantsim
