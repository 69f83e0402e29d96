// Output allocation for kernels. While an executor runs, tensors it has freed are kept in a pool and handed back
// for outputs of the same dtype and element count, so a run after the first allocates (and page-faults) nothing
// for its activations. Outside a run new_tensor is tensor::empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include <quantsim/core/tensor.hpp>

namespace quantsim::detail {

class tensor_pool {
public:
    /// A tensor of this shape and dtype: a pooled buffer of the same size if there is one, else a new one.
    tensor take(shape_t shape, dtype type);
    /// Keeps `t` for reuse if nothing else references its storage and the pool has room; else drops it.
    void give(tensor&& t);
    /// Bytes the pool may hold (the executor sets it to its peak live set).
    void set_capacity(std::size_t bytes) noexcept { capacity_ = bytes; }
    std::size_t pooled_bytes() const noexcept { return bytes_; }
    void clear() {
        free_.clear();
        bytes_ = 0;
    }

private:
    std::map<std::pair<int, std::int64_t>, std::vector<tensor>> free_;  ///< (dtype, numel) -> buffers
    std::size_t bytes_ = 0;
    std::size_t capacity_ = std::size_t{64} << 20;
};

/// The pool kernels on this thread allocate from (nullptr: none).
tensor_pool*& active_tensor_pool() noexcept;

/// Sets the active pool until the scope ends.
class tensor_pool_scope {
public:
    explicit tensor_pool_scope(tensor_pool* p) noexcept : prev_(active_tensor_pool()) { active_tensor_pool() = p; }
    ~tensor_pool_scope() { active_tensor_pool() = prev_; }
    tensor_pool_scope(const tensor_pool_scope&) = delete;
    tensor_pool_scope& operator=(const tensor_pool_scope&) = delete;

private:
    tensor_pool* prev_;
};

/// An uninitialized tensor for a kernel's output.
inline tensor new_tensor(shape_t shape, dtype type = dtype::float32) {
    if (tensor_pool* p = active_tensor_pool()) return p->take(std::move(shape), type);
    return tensor::empty(std::move(shape), type);
}

}  // namespace quantsim::detail
