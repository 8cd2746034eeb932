# make demo: install dependencies, build, run the showcase on the bundled tiny model.
# make test: install dependencies, build, run the whole test suite.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: deps build test demo clean

deps:
	./scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE heavy

demo: build
	./scripts/demo.sh $(BUILD)/sine

clean:
	rm -rf $(BUILD)
