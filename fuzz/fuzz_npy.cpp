// libFuzzer entry point for the npy reader; the body lives in fuzz_targets.hpp (replayed by make test).
#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    quantsim::fuzz::npy_target(data, size);
    return 0;
}
