# The two commands of the README: `make demo` and `make test`. Both create .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint clean

$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[cpu]"
	touch $@

$(VENV)/.test-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[cpu,dev]"
	touch $@ $(VENV)/.demo-installed

DEMO_DIR := runs/demo
DEMO_FRAME := data/camvid_mini/val/0016E5_07959.png

# Train on the bundled sample, export the EMA teacher to ONNX (prints the parity with
# TensorFlow) and segment one bundled frame with ONNX Runtime (prints where the overlay is).
demo: $(VENV)/.demo-installed
	$(PY) -m scl_tf.train --flagfile=configs/demo.flags --model_dir=$(DEMO_DIR)
	$(PY) export/to_onnx.py --source=$(DEMO_DIR) --output=$(DEMO_DIR)/model.onnx
	$(PY) export/predict_onnx.py --model=$(DEMO_DIR)/model.onnx --image=$(DEMO_FRAME) \
		--output=$(DEMO_DIR)/onnx_overlay.png

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Two processes, one test file each at a time (module fixtures are built once): 1.6x faster on
# 2 cores, where a test's subprocess start-up and tracing leave a core idle.
test: lint
	$(PY) -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
