# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup demo test lint clean

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) -m suhd_ros.tools.demo $(ARGS)

test: setup
	$(PY) -m pytest -q test $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build install log .pytest_cache

# Benchmarks (SNN vs ANN vs rate coding vs SpikingJelly, the node end to end) -> docs/benchmarks.md.
# 18-23 minutes on 2 cores with ARGS="--images 50 --val-images 50" (as committed), longer with the
# defaults (100 scenes each);
# ARGS="--quick" for a short run, ARGS="--model my.safetensors" etc.
.PHONY: bench
bench: setup
	$(VENV)/bin/pip install --quiet --no-deps -r requirements/bench.txt
	$(PY) benchmarks/run_all.py $(ARGS)
