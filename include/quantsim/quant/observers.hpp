// Umbrella header for the calibration observers (range estimators). See docs/observers.md.
#pragma once

#include <quantsim/quant/observers/any_observer.hpp>
#include <quantsim/quant/observers/entropy.hpp>
#include <quantsim/quant/observers/histogram.hpp>
#include <quantsim/quant/observers/histogram_observer.hpp>
#include <quantsim/quant/observers/minmax.hpp>
#include <quantsim/quant/observers/moving_average.hpp>
#include <quantsim/quant/observers/mse.hpp>
#include <quantsim/quant/observers/observer.hpp>
#include <quantsim/quant/observers/parallel.hpp>
#include <quantsim/quant/observers/per_channel_minmax.hpp>
#include <quantsim/quant/observers/percentile.hpp>
#include <quantsim/quant/observers/sqnr.hpp>
