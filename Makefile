# Two commands do all the set-up on a fresh machine (Python >= 3.11 and the package index):
#   make quickstart   # create .venv, install tfmetarec, meta-train + evaluate on synthetic data
#   make test         # create .venv, install tfmetarec with test extras, run the test suite
#                     # (heavy files alone, light ones six to a process, two at a time: scripts/run_tests.py)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: quickstart test benchmark clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev,onnx,serving,tfrs]"
	touch $@

quickstart: $(BIN)/.installed
	$(BIN)/tfmetarec quickstart $(ARGS)

test: $(BIN)/.installed
	$(BIN)/python scripts/run_tests.py $(PYTEST_ARGS)

benchmark: $(BIN)/.installed
	$(BIN)/python benchmarks/meta_train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
