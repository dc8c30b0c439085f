# Two commands do all set-up on a fresh clone (Python 3.11, no GPU):
#   make demo   -- create .venv, install, run the main job, write its plot
#   make test   -- create .venv, install, run linters, the import contract and the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl

.PHONY: demo test test-slow lint bench clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: an unpinned torch pulls several GB of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,video,ray,ros]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/mbrl train pets --config configs/pets_quick.json --out runs

lint: $(BIN)/.installed
	$(BIN)/ruff check envs controllers mbrl sim2real tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -m "not slow" -n 2 -q

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -m slow -q

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.env_throughput
	$(BIN)/python -m benchmarks.planning_speed

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
