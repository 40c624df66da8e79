# Melon: `make demo` runs the main job on this machine, `make test` runs every test.
# Both set up what they need from nothing: a Python venv with Melon and what it needs to run
# (`setup`), and for the tests, benchmarks and pictures also the test tools (`setup-test`).

# The system interpreter where there is one: other users (test users, job owners) can run it,
# unlike an interpreter under root's home.
PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
SUM    := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(SUM)
TEST_STAMP := $(VENV)/.installed-test-$(SUM)

.PHONY: setup setup-test demo test test-unit man bench bench-cluster screenshots clean

# Bytecode is compiled every time (cheap when nothing changed): this environment may set
# PYTHONDONTWRITEBYTECODE, and without .pyc files every CLI run recompiles what it imports.
setup: $(STAMP)
	$(BIN)/python -m compileall -q melond remote cli

setup-test: $(TEST_STAMP)
	$(BIN)/python -m compileall -q melond remote cli

$(STAMP): pyproject.toml
	bash scripts/setup.sh $(PYTHON) $(VENV)
	touch $@

$(TEST_STAMP): pyproject.toml
	bash scripts/setup.sh $(PYTHON) $(VENV) test
	touch $@ $(STAMP)

demo: setup
	bash scripts/demo.sh

test: setup-test
	bash scripts/test.sh

# The fast tier alone (pure logic and SQLite, in-process): seconds, for the edit-test loop.
test-unit: setup-test
	bash scripts/test.sh tests/unit

# The manual pages (man/), from the definitions each command's --help prints; commit the result
# (tests/unit/test_man_pages.py fails while they differ).
man: setup
	$(BIN)/python scripts/gen_man.py

# Every benchmark in turn, then a table of their headline figures (bench/run; `bench/run NAME`
# runs one). Those that need a Docker engine or Slurm say they skipped where it is missing.
bench: setup-test
	$(BIN)/python bench/run

# The Docker cluster's two alone.
bench-cluster: setup-test
	$(BIN)/python bench/run cluster recovery

# The README's pictures of the web UI (docs/img), from a real melond with three local nodes.
screenshots: setup-test
	$(BIN)/python scripts/ui_screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
