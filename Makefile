# The two commands of the README. Both install what is missing (Debian packages through
# deploy/install-deps.sh, npm packages for the tests from tests/node/package-lock.json).
.PHONY: run test build build-all deps test-deps node-deps image-test bench clean

BUILD_DIR ?= build
CMAKE_FLAGS ?= -G Ninja -DCMAKE_BUILD_TYPE=Release -DSWARMCOORD_TESTS=ON
CONFIG ?= config/swarmcoord.toml

run: build
	$(BUILD_DIR)/swarmcoord --config $(CONFIG)

test: test-deps build-all node-deps
	ctest --test-dir $(BUILD_DIR) --output-on-failure --timeout 300

# The same tests against an ASan + UBSan build (SWARMCOORD_SANITIZE) in a folder of its own:
# a sanitizer finding fails the test that caused it. No benchmarks: compile time only.
.PHONY: test-sanitize
test-sanitize:
	$(MAKE) test BUILD_DIR=build-sanitize CMAKE_FLAGS="-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSWARMCOORD_TESTS=ON -DSWARMCOORD_BENCH=OFF -DSWARMCOORD_SANITIZE=ON"

deps:
	deploy/install-deps.sh build

test-deps:
	deploy/install-deps.sh test

$(BUILD_DIR)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) --target swarmcoord

build-all: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR)

# npm ci only when a lock file changed since the last install: the test suites' packages,
# and the native peer's (clients/node: ws, @roamhq/wrtc).
node-deps: tests/node/node_modules/.installed clients/node/node_modules/.installed

tests/node/node_modules/.installed: tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

clients/node/node_modules/.installed: clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

image-test:
	deploy/install-deps.sh image
	deploy/image-test.sh

bench: build-all node-deps
	bench/compare.sh

clean:
	rm -rf $(BUILD_DIR) tests/node/node_modules clients/node/node_modules

# libFuzzer targets (tests/fuzz), built with clang-14 and ASan/UBSan in a folder of their own;
# each runs FUZZ_SECONDS from its seed corpus. fuzz-smoke is the short run CI does.
.PHONY: fuzz fuzz-smoke fuzz-build fuzz-deps
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 30

fuzz-deps:
	deploy/install-deps.sh fuzz

$(FUZZ_BUILD_DIR)/build.ninja: CMakeLists.txt tests/fuzz/CMakeLists.txt
	cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWARMCOORD_FUZZ=ON \
	  -DCMAKE_CXX_COMPILER=clang++-14

fuzz-build: fuzz-deps $(FUZZ_BUILD_DIR)/build.ninja
	cmake --build $(FUZZ_BUILD_DIR)

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD_DIR) $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD_DIR) $(FUZZ_SMOKE_SECONDS)
