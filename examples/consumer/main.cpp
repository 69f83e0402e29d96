// Links the compiled quantsim library found with find_package(quantsim).
#include <iostream>

#include <quantsim/core/tensor.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/version_info.hpp>

int main() {
    const quantsim::tensor t = quantsim::tensor::from({-1.0f, 0.5f, 2.0f, 3.0f}, {2, 2});
    quantsim::quant_spec spec;
    const quantsim::encoding e = quantsim::encoding_from_range(-1.0, 3.0, spec);
    std::cout << "quantsim " << quantsim::library_version() << ": tensor " << quantsim::to_string(t.shape())
              << ", scale " << e.scale << ", zero point " << e.zero_point << "\n";
    return 0;
}
