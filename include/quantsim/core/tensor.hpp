// A dense, contiguous, reference-counted tensor. Copies share storage (cheap); clone() copies the data.
// Views (reshape, slice along axis 0) share storage too. Eigen maps give the math.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <quantsim/config.hpp>
#include <quantsim/core/dtype.hpp>
#include <quantsim/core/error.hpp>

namespace quantsim {

using shape_t = std::vector<std::int64_t>;

/// "[2, 3, 4]"
inline std::string to_string(const shape_t& s) {
    std::string r = "[";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

/// Largest single tensor allocation quantsim makes, in bytes. Sizes read from files are checked against it before
/// anything is allocated. Default: 16 GiB; change it with set_max_tensor_bytes().
inline std::size_t& max_tensor_bytes_ref() noexcept {
    static std::size_t limit = std::size_t{16} << 30;
    return limit;
}
inline std::size_t max_tensor_bytes() noexcept { return max_tensor_bytes_ref(); }
inline void set_max_tensor_bytes(std::size_t bytes) noexcept { max_tensor_bytes_ref() = bytes; }

/// Product of the dimensions, checked: negative dimensions, overflow and sizes above max_tensor_bytes() throw.
/// `what` names the tensor in the message.
inline std::int64_t checked_numel(const shape_t& shape, std::size_t elem_size = 4,
                                  const std::string& what = "tensor") {
    std::int64_t n = 1;
    for (std::int64_t d : shape) {
        if (d < 0) QUANTSIM_THROW(shape_error, what, ": negative dimension in shape ", to_string(shape));
        if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d)
            QUANTSIM_THROW(resource_error, what, ": element count of shape ", to_string(shape), " overflows");
        n *= d;
    }
    if (elem_size != 0 && static_cast<std::uint64_t>(n) > max_tensor_bytes() / elem_size)
        QUANTSIM_THROW(resource_error, what, ": shape ", to_string(shape), " needs ",
                       static_cast<double>(n) * static_cast<double>(elem_size) / (1 << 20),
                       " MiB, above the limit of ", max_tensor_bytes() >> 20, " MiB");
    return n;
}

/// Normalizes a possibly negative axis for a tensor of the given rank; throws if out of range.
inline int normalize_axis(std::int64_t axis, int rank, const char* what = "axis") {
    if (axis < -rank || axis >= rank)
        QUANTSIM_THROW(invalid_argument, what, " ", axis, " is out of range for a tensor of rank ", rank);
    return static_cast<int>(axis < 0 ? axis + rank : axis);
}

class tensor {
public:
    using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using vector_map = Eigen::Map<Eigen::VectorXf>;
    using const_vector_map = Eigen::Map<const Eigen::VectorXf>;

    static constexpr std::size_t alignment = 64;

    tensor() = default;

    /// Zero-filled tensor.
    explicit tensor(shape_t shape, dtype type = dtype::float32) : tensor(empty(std::move(shape), type)) {
        if (nbytes()) std::memset(raw(), 0, nbytes());
    }

    /// Uninitialized tensor (for outputs that are fully written).
    static tensor empty(shape_t shape, dtype type = dtype::float32) {
        tensor t;
        t.numel_ = checked_numel(shape, size_of(type));
        t.shape_ = std::move(shape);
        t.type_ = type;
        const std::size_t bytes = static_cast<std::size_t>(t.numel_) * size_of(type);
        // Round up so vector loops may read whole 64-byte lines; at least one line so data() is never null.
        const std::size_t alloc = std::max<std::size_t>(alignment, (bytes + alignment - 1) / alignment * alignment);
        auto* p = static_cast<std::byte*>(::operator new(alloc, std::align_val_t{alignment}));
        t.storage_ = std::shared_ptr<std::byte>(
            p, [](std::byte* q) { ::operator delete(q, std::align_val_t{alignment}); });
        return t;
    }
    static tensor zeros(shape_t shape, dtype type = dtype::float32) { return tensor(std::move(shape), type); }
    static tensor full(shape_t shape, float value) {
        tensor t = empty(std::move(shape));
        std::fill_n(t.data<float>(), t.numel(), value);
        return t;
    }
    static tensor scalar(float value) { return full({}, value); }

    /// Copies `values` into a new tensor of the given shape (sizes must agree).
    template <class T>
    static tensor from(std::span<const T> values, shape_t shape) {
        static_assert(has_dtype_v<T>, "no dtype for this element type");
        tensor t = empty(std::move(shape), dtype_of_v<T>);
        if (static_cast<std::int64_t>(values.size()) != t.numel())
            QUANTSIM_THROW(shape_error, "tensor::from: ", values.size(), " values do not fill shape ",
                           to_string(t.shape_));
        if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(T));
        return t;
    }
    template <class T>
    static tensor from(const std::vector<T>& values, shape_t shape) {
        return from(std::span<const T>(values.data(), values.size()), std::move(shape));
    }
    static tensor from(std::initializer_list<float> values, shape_t shape) {
        return from(std::span<const float>(values.begin(), values.size()), std::move(shape));
    }

    bool defined() const noexcept { return static_cast<bool>(storage_); }
    dtype type() const noexcept { return type_; }
    const shape_t& shape() const noexcept { return shape_; }
    int rank() const noexcept { return static_cast<int>(shape_.size()); }
    std::int64_t dim(std::int64_t axis) const { return shape_[normalize_axis(axis, rank())]; }
    std::int64_t numel() const noexcept { return numel_; }
    std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel_) * size_of(type_); }

    void* raw() noexcept { return storage_.get() + offset_; }
    const void* raw() const noexcept { return storage_.get() + offset_; }

    /// Typed pointer; throws if T does not store this tensor's dtype.
    template <class T>
    T* data() {
        check_type<T>();
        return static_cast<T*>(raw());
    }
    template <class T>
    const T* data() const {
        check_type<T>();
        return static_cast<const T*>(raw());
    }
    float* f32() { return data<float>(); }
    const float* f32() const { return data<float>(); }
    template <class T>
    std::span<T> span() {
        return {data<T>(), static_cast<std::size_t>(numel_)};
    }
    template <class T>
    std::span<const T> span() const {
        return {data<T>(), static_cast<std::size_t>(numel_)};
    }

    /// View with a new shape and the same elements; one dimension may be -1.
    tensor reshape(shape_t new_shape) const {
        std::int64_t known = 1;
        int infer = -1;
        for (std::size_t i = 0; i < new_shape.size(); ++i) {
            if (new_shape[i] == -1) {
                if (infer >= 0) QUANTSIM_THROW(shape_error, "reshape: more than one -1 in ", to_string(new_shape));
                infer = static_cast<int>(i);
            } else if (new_shape[i] < 0) {
                QUANTSIM_THROW(shape_error, "reshape: invalid dimension in ", to_string(new_shape));
            } else {
                known *= new_shape[i];
            }
        }
        if (infer >= 0) {
            if (known == 0 || numel_ % known != 0)
                QUANTSIM_THROW(shape_error, "reshape: cannot infer -1 in ", to_string(new_shape), " from ",
                               to_string(shape_));
            new_shape[infer] = numel_ / known;
        }
        if (checked_numel(new_shape, 0) != numel_)
            QUANTSIM_THROW(shape_error, "reshape: ", to_string(shape_), " (", numel_, " elements) cannot become ",
                           to_string(new_shape));
        tensor v = *this;
        v.shape_ = std::move(new_shape);
        return v;
    }

    /// View of rows [begin, end) along axis 0.
    tensor slice(std::int64_t begin, std::int64_t end) const {
        if (rank() == 0) QUANTSIM_THROW(shape_error, "slice: a scalar has no axis 0");
        if (begin < 0 || end < begin || end > shape_[0])
            QUANTSIM_THROW(shape_error, "slice: [", begin, ", ", end, ") is outside axis 0 of size ", shape_[0]);
        const std::int64_t row = shape_[0] ? numel_ / shape_[0] : 0;
        tensor v = *this;
        v.shape_[0] = end - begin;
        v.numel_ = row * (end - begin);
        v.offset_ += static_cast<std::size_t>(begin * row) * size_of(type_);
        return v;
    }

    /// Deep copy.
    tensor clone() const {
        if (!defined()) return {};
        tensor t = empty(shape_, type_);
        if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
        return t;
    }

    bool shares_storage(const tensor& other) const noexcept { return storage_ && storage_ == other.storage_; }
    /// Number of tensors (copies and views) sharing this storage; 0 for an undefined tensor. Lets an owner tell
    /// whether a buffer it is about to reuse is referenced elsewhere.
    long use_count() const noexcept { return storage_.use_count(); }

    void fill(float value) { std::fill_n(data<float>(), numel_, value); }

    /// Row-major rows x cols map of float data (rows * cols must equal numel()).
    Eigen::Map<row_matrix> matrix(std::int64_t rows, std::int64_t cols) {
        check_matrix(rows, cols);
        return {data<float>(), rows, cols};
    }
    Eigen::Map<const row_matrix> matrix(std::int64_t rows, std::int64_t cols) const {
        check_matrix(rows, cols);
        return {data<float>(), rows, cols};
    }
    vector_map vector() { return {data<float>(), numel_}; }
    const_vector_map vector() const { return {data<float>(), numel_}; }

private:
    template <class T>
    void check_type() const {
        if (!stores<T>(type_))
            QUANTSIM_THROW(invalid_argument, "tensor of dtype ", name_of(type_), " accessed as another type");
    }
    void check_matrix(std::int64_t rows, std::int64_t cols) const {
        if (rows < 0 || cols < 0 || rows * cols != numel_)
            QUANTSIM_THROW(shape_error, "matrix view ", rows, "x", cols, " does not match ", numel_, " elements");
    }

    std::shared_ptr<std::byte> storage_;
    std::size_t offset_ = 0;
    shape_t shape_;
    std::int64_t numel_ = 0;
    dtype type_ = dtype::float32;
};

}  // namespace quantsim
