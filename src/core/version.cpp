#include <quantsim/version_info.hpp>

namespace quantsim {
const char* library_version() noexcept { return QUANTSIM_VERSION_STRING; }
}  // namespace quantsim
