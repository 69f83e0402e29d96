// The quantizer subsystem in one include: encodings and granularity, rounding options, fake-quant, quantize /
// dequantize, Eigen overloads, QAT gradients, and the plain reference kernels.
#pragma once

#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/eigen.hpp>
#include <quantsim/quant/fake_quant.hpp>
#include <quantsim/quant/gradients.hpp>
#include <quantsim/quant/layout.hpp>
#include <quantsim/quant/quantize.hpp>
#include <quantsim/quant/reference.hpp>
#include <quantsim/quant/rounding.hpp>

// Observers (range estimators) are added below by their owner:
// (observers include goes here)
