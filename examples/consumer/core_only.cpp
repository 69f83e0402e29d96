// Uses only quantsim::core (header-only): encodings from a range.
#include <iostream>

#include <quantsim/quant/encoding.hpp>

int main() {
    quantsim::quant_spec spec;
    spec.bitwidth = 8;
    const quantsim::encoding e = quantsim::encoding_from_range(-1.0, 3.0, spec);
    std::cout << "scale " << e.scale << " zero point " << e.zero_point << "\n";
    return e.zero_point == 64 ? 0 : 1;
}
