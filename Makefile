# The README's two commands: `make demo` and `make test`. A plain `make` only builds.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps configure build demo test bench clean format
all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

demo: build
	@bash runtime/demo.sh $(BUILD)/bin

test: build
	@cd $(BUILD) && ctest --output-on-failure --timeout 900

# Every benchmark (about half an hour), then perf/results.json, docs/PERFORMANCE.md, docs/perf/*.png.
bench: build
	@bash scripts/install-deps.sh bench
	@$(BUILD)/bin/ferry-bench all

format:
	@find dipc pm xmm runtime tests perf -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	@rm -rf $(BUILD)
