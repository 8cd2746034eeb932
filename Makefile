# make demo:       install dependencies, build, run the showcase on the bundled model.
# make test:       install dependencies, build, run the whole test suite (Debian's LibTorch 1.13, CPU).
# make test-heavy: the tests labelled heavy (full-size SD 1.5 random weights, GBs on disk; ~1-2 min).
# make build-cuda: PyPI's LibTorch 2.11 (CUDA 13) in .venv, every CUDA path compiled in (build-cuda/).
# make test-cuda:  the whole test suite with that CUDA-enabled binary (runs on the CPU without a GPU;
#                  the SIGKILL crash test, label crash, runs once, in make test).
# make fuzz:       libFuzzer targets (clang-14, ASan + UBSan) in build-fuzz/, each run FUZZ_SECONDS (10).
# make test-asan:  the whole suite built with ASan + UBSan (build-asan/; label heavy excluded).
BUILD ?= build
BUILD_CUDA ?= build-cuda
BUILD_FUZZ ?= build-fuzz
BUILD_ASAN ?= build-asan
FUZZ_SECONDS ?= 10
JOBS ?= $(shell nproc)

.PHONY: deps deps-pip build test test-heavy demo build-cuda test-cuda test-cuda-device fuzz build-asan test-asan clean

deps:
	./scripts/install-deps.sh

deps-pip:
	./scripts/install-deps.sh --torch pip

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE 'heavy|cuda'

test-heavy: build
	cd $(BUILD) && ctest --output-on-failure -L heavy

demo: build
	./scripts/demo.sh $(BUILD)/sine

$(BUILD_CUDA)/build.ninja:
	cmake -S . -B $(BUILD_CUDA) -G Ninja -DCMAKE_BUILD_TYPE=Release -DSINE_CUDA=ON \
	  -DSINE_TORCH_PYTHON=$(CURDIR)/.venv/bin/python

build-cuda: deps-pip $(BUILD_CUDA)/build.ninja
	cmake --build $(BUILD_CUDA) -j $(JOBS)

test-cuda: build-cuda
	cd $(BUILD_CUDA) && ctest --output-on-failure -j $(JOBS) -LE 'heavy|cuda|crash'

# On a machine with a GPU: the tests that need one (label cuda).
test-cuda-device: build-cuda
	cd $(BUILD_CUDA) && ctest --output-on-failure -L cuda

$(BUILD_FUZZ)/build.ninja:
	CXX=clang++-14 cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSINE_FUZZ=ON

fuzz: deps $(BUILD_FUZZ)/build.ninja
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz.sh $(BUILD_FUZZ)

$(BUILD_ASAN)/build.ninja:
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Release -DSINE_SANITIZE=ON

# Test discovery runs each test binary at build time: leak checks wait for the suite.
build-asan: deps $(BUILD_ASAN)/build.ninja
	ASAN_OPTIONS=detect_leaks=0 cmake --build $(BUILD_ASAN) -j $(JOBS)

# Any report fails the test that caused it (halt_on_error); leaks that belong to LibTorch's own
# state, not to sine, would be listed in tests/sanitizers/lsan.supp. Labels load (an RSS-growth
# limit that ASan's quarantine breaks) and crash (SIGKILL timing, 15 min) are left to make test.
test-asan: build-asan
	cd $(BUILD_ASAN) && ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizers/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -LE 'heavy|cuda|load|crash'

clean:
	rm -rf $(BUILD) $(BUILD_CUDA) $(BUILD_FUZZ) $(BUILD_ASAN)
