# Makefile - the short paths through the build, so that nobody has to type cmake.
#
#   make          build (Release: -O2 -g) into build/
#   make run      install deps, build, start llmos's main job
#   make test     install deps, build, run every test with ctest
#   make asan     AddressSanitizer + UBSan build in build-asan/, same tests
#   make crash    the crash test's long run: CRASH_ROUNDS (1000) SIGKILL rounds against the store
#   make fuzz     clang libFuzzer build in build-fuzz/, each target for FUZZ_SECONDS
#   make bench    build and run the benchmarks in bench/
#   make format   clang-format the tree;  make lint   clang-tidy + cppcheck
#
# LLMOS_NO_DEPS=1 skips scripts/deps. CI=true turns warnings into errors.

BUILD      ?= build
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CRASH_ROUNDS ?= 1000
WERROR     := $(if $(filter true 1,$(CI)),ON,OFF)
CMAKE_ARGS ?=

SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find src include tests fuzz bench -name '*.[ch]')

.PHONY: all build deps run test asan crash fuzz bench format lint clean

all: build

deps:
ifneq ($(LLMOS_NO_DEPS),1)
	@bash scripts/deps
endif

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DLLMOS_WERROR=$(WERROR) $(CMAKE_ARGS)

build: $(BUILD)/CMakeCache.txt
	cmake -S . -B $(BUILD) -DLLMOS_WERROR=$(WERROR) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: deps
	@$(MAKE) --no-print-directory build
	./$(BUILD)/llmos

test: deps
	@$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLLMOS_SANITIZE=ON -DLLMOS_WERROR=$(WERROR)
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

# A child process commits transactions to a store and is killed with SIGKILL at a random
# moment, CRASH_ROUNDS times; every reopen must verify and hold every transaction the child saw
# commit. The last lines give the committed transactions lost (must be 0) and the time.
crash: build
	LLMOS_CRASH_ROUNDS=$(CRASH_ROUNDS) ./$(BUILD)/test_storage_crash

fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DLLMOS_FUZZ=ON
	cmake --build build-fuzz -j $(JOBS) --target fuzz_all
	@set -e; for f in build-fuzz/fuzz_*; do \
	  name=$$(basename $$f); short=$${name#fuzz_}; \
	  mkdir -p build-fuzz/corpus/$$short; \
	  echo "== $$name for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    build-fuzz/corpus/$$short fuzz/corpus/$$short; \
	done

# The quick benchmarks; the long ones (bench/run_vdb.sh, bench/run_infer.sh: datasets and
# random models of real shapes, tens of minutes) are run by hand, see bench/README.md.
TESTDATA ?= ../shared/testdata
bench: build
	./$(BUILD)/bench/quant --mib 256 --threads $(JOBS)
	./$(BUILD)/bench/grammar $(TESTDATA)/vocab
	./$(BUILD)/bench/roofline --model $(TESTDATA)/models/stories260K.gguf -t $(JOBS)

format:
	clang-format -i $(SOURCES)

lint: build
	run-clang-tidy -p $(BUILD) -j $(JOBS) -quiet '$(CURDIR)/src/.*\.c$$' >$(BUILD)/clang-tidy.log 2>&1 \
	  || { grep -E 'error:|warning:' $(BUILD)/clang-tidy.log; exit 1; }
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem --suppress=invalidPointerCast \
	  --suppress='invalidPrintfArgType_s:src/cli/cmd_model_random.c' -I include -I src src

clean:
	rm -rf $(BUILD) build-asan build-fuzz
