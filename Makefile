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
