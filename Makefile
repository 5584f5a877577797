# The README's two commands: `make demo` (the main job) and `make test` (every test).
# Both install what they need first through `make setup`, which is safe to rerun.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# onnxruntime and the ALSA pulse plugin write under HOME: keep tests out of the real one.
# onnxruntime also looks up its telemetry host when it loads a model: offline means off.
SCRATCH := $(CURDIR)/.scratch
TEST_ENV := HOME=$(SCRATCH)/home XDG_CACHE_HOME=$(SCRATCH)/cache XDG_CONFIG_HOME=$(SCRATCH)/config \
	XDG_DATA_HOME=$(SCRATCH)/data XDG_RUNTIME_DIR=$(SCRATCH)/runtime MPLCONFIGDIR=$(SCRATCH)/mpl \
	ORT_DISABLE_TELEMETRY=1

.PHONY: setup demo test lint format bench clean

setup:
	@bash scripts/setup.sh

# The main job: the conformance suite on the reference agent over the JACK loopback (tympan
# starts jackd itself), results and report in out/run. DEMO_ARGS go to `tympan run`.
demo: setup
	@mkdir -p $(SCRATCH)/home $(SCRATCH)/runtime && chmod 700 $(SCRATCH)/runtime
	@# exit 3 is "every contract held on what could be judged" (too few turns for a p95, a
	@# host that could not measure): tympan says which; make fails on 1 (failed) and 2
	@$(TEST_ENV) $(VENV)/bin/tympan run --out out/run $(DEMO_ARGS); status=$$?; \
		[ $$status -eq 0 ] || [ $$status -eq 3 ] || exit $$status

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	@mkdir -p $(SCRATCH)/home $(SCRATCH)/runtime && chmod 700 $(SCRATCH)/runtime
	$(MAKE) -C device/firmware test BUILD=$(SCRATCH)/firmware
	$(TEST_ENV) TYMPAN_REQUIRE_FRAMEWORKS=1 $(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(TEST_ENV) $(PY) benchmarks/bench_analysis.py

clean:
	rm -rf $(SCRATCH) out .pytest_cache .ruff_cache .hypothesis
