# concur - the two commands of the README: `make run` and `make test`.
# Each installs the Debian packages it needs when they are missing.

DEBS := cmake make gcc pkg-config liblua5.4-dev lua5.4 libyaml-dev \
        libcmocka-dev libjansson-dev lua-socket lua-cjson procps util-linux
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

FUZZ_DEBS := clang libclang-rt-14-dev
FUZZ_SECONDS ?= 60

.PHONY: all deps fuzz-deps build build-sanitize run test test-release test-sanitize fuzz bench stress install clean

all: build

deps fuzz-deps: WANT = $(if $(filter fuzz-deps,$@),$(FUZZ_DEBS),$(DEBS))
deps fuzz-deps:
	@missing=$$(for p in $(WANT); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "missing Debian packages; run:"; \
	    echo "  sudo apt-get install -y" $$missing; exit 1; \
	  fi; \
	fi

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build -j $(JOBS)

build-sanitize: deps
	@cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Sanitize >/dev/null
	@cmake --build build-sanitize -j $(JOBS)

run: build
	./build/concur batch config/scenarios.yaml --out build/results/catalogue

test: test-release test-sanitize

test-release: build
	cd build && ctest --output-on-failure -j $(JOBS)

test-sanitize: build-sanitize
	cd build-sanitize && ASAN_OPTIONS=abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

# The fault suite's long version: 1,000 kills a case (SIGKILLed holders,
# waiters, senders and receivers of every primitive), and its table.
STRESS_KILLS ?= 1000
stress: build
	CONCUR_FAULT_KILLS=$(STRESS_KILLS) ./build/concur run tests/lua/test_faults.lua --timeout 0

# The performance table: concur against CPython (python3) and the machine's
# limits, one run at a time (a few minutes).
bench: build
	./build/tests/limits > build/bench-limits.jsonl
	./build/concur batch config/bench.yaml --jobs 1 --out build/bench > /dev/null
	./build/concur run tools/bench_table.lua -p dir=build/bench -p limits=build/bench-limits.jsonl

# The codec's decoder under libFuzzer, with ASan and UBSan, for FUZZ_SECONDS.
fuzz: deps fuzz-deps
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	  -DCONCUR_FUZZ=ON >/dev/null
	@cmake --build build-fuzz --target fuzz_codec -j $(JOBS)
	mkdir -p build-fuzz/corpus
	./build-fuzz/tests/fuzz_codec -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  build-fuzz/corpus

install: build
	cmake --install build

clean:
	rm -rf build build-sanitize build-fuzz
