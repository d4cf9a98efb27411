# Front door: `make run` trains the demo, `make test` runs the whole test suite,
# `make lint` runs the static analysers (cppcheck, clang-tidy).
# Both install system packages first (scripts/deps.sh) and build with CMake.
BUILD     ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
# Seconds each fuzz target runs in `make fuzz`.
FUZZ_SECONDS ?= 60
JOBS      ?= 2
CMAKE_ARGS ?=
# Warnings are errors everywhere the Makefile builds (CI included).
WERROR    ?= ON

.PHONY: all deps build run test test-asan lint fuzz bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DGRAFT_WERROR=$(WERROR) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# Convert Fashion-MNIST to shards once, then train the MLP of configs/fmnist_mlp.yaml.
run: build
	@test -f data/fmnist/train/index.json || ./$(BUILD)/graft data fmnist --out data/fmnist/train --split train
	@test -f data/fmnist/test/index.json || ./$(BUILD)/graft data fmnist --out data/fmnist/test --split test
	OPENBLAS_NUM_THREADS=$(JOBS) OPENBLAS_THREAD_TIMEOUT=4 ./$(BUILD)/graft train configs/fmnist_mlp.yaml

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# The same suite built with AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DGRAFT_WERROR=$(WERROR) -DCMAKE_BUILD_TYPE=Debug \
		-DGRAFT_SANITIZE=address,undefined $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS) -LE slow

# cppcheck and clang-tidy over the compile database of $(BUILD) (cmake exports it);
# non-zero on any finding. Configuring is enough: nothing is compiled.
lint: deps
	@cmake -S . -B $(BUILD) -DGRAFT_WERROR=$(WERROR) $(CMAKE_ARGS) >/dev/null
	bash scripts/lint.sh $(BUILD) $(JOBS)

# libFuzzer targets (tests/fuzz/) built with Debian's clang 14, ASan and UBSan, each run for
# FUZZ_SECONDS; any crash, leak, sanitizer report or hang fails (tests/fuzz/run.sh).
fuzz: deps
	@CC=clang-14 cmake -S . -B $(FUZZ_BUILD) -DGRAFT_FUZZ=ON -DGRAFT_WERROR=$(WERROR) \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF $(CMAKE_ARGS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS)
	bash tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

bench: build
	./$(BUILD)/graft bench gemm

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
