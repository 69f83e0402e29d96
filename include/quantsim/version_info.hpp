// Runtime access to the library version (the compiled library's, which may differ from the headers' in a mixed
// installation).
#pragma once

#include <quantsim/version.hpp>

namespace quantsim {
/// Version of the compiled quantsim library, e.g. "0.1.0".
const char* library_version() noexcept;
}  // namespace quantsim
