#include <quantsim/ir/kernels/alloc.hpp>

namespace quantsim::detail {

tensor_pool*& active_tensor_pool() noexcept {
    thread_local tensor_pool* p = nullptr;
    return p;
}

tensor tensor_pool::take(shape_t shape, dtype type) {
    const std::int64_t n = checked_numel(shape, size_of(type));
    auto it = free_.find({static_cast<int>(type), n});
    if (it == free_.end() || it->second.empty()) return tensor::empty(std::move(shape), type);
    tensor t = std::move(it->second.back());
    it->second.pop_back();
    bytes_ -= t.nbytes();
    return t.reshape(std::move(shape));
}

void tensor_pool::give(tensor&& t) {
    if (!t.defined() || t.use_count() != 1 || t.nbytes() == 0) {
        t = tensor();
        return;
    }
    if (bytes_ + t.nbytes() > capacity_) {
        t = tensor();
        return;
    }
    bytes_ += t.nbytes();
    free_[{static_cast<int>(t.type()), t.numel()}].push_back(std::move(t));
}

}  // namespace quantsim::detail
