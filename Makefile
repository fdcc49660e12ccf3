# The two commands of the README. Both set everything up first (scripts/install.sh, idempotent).
# `make test` lints (ruff, configured in pyproject.toml) before it runs the tests.
VENV ?= .venv

.PHONY: demo test setup

setup:
	VENV=$(VENV) bash scripts/install.sh

demo: setup
	$(VENV)/bin/onnxtopo inspect models/ccff-relu.onnx
	$(VENV)/bin/onnxtopo analyze models/ccff-relu.onnx --inputs models/mnist-sample.npy --out onnxtopo-results

test: setup
	$(VENV)/bin/python -m ruff check .
	$(VENV)/bin/python -m pytest -q
