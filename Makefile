# The environment is made here, not assumed: torch is installed first and pinned to the CPU build
# (any other torch spec pulls GBs of CUDA packages), then the package and its extras, then the real
# TensorRT Python bindings 10.3 / 10.13 / 11.4 with a C stub of their native libraries (unpacked in
# build/trt-bindings, not installed) that tests/runtime/test_trt_surface.py checks our calls against.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH  := torch==2.13.0

.PHONY: demo test test-slow matrix bench readme lint docker-test clean

$(STAMP): pyproject.toml tools/trt_bindings.py tools/trt_stub.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[torch,serve,dev]'
	$(BIN)/python tools/trt_bindings.py build/trt-bindings
	touch $(STAMP)

## demo: export CBAM at opset 17, simplify, validate in ONNX Runtime vs PyTorch, re-check the golden file
demo: $(STAMP)
	$(BIN)/attn-export cbam --opset 17
	$(BIN)/attn-export validate exports/cbam/cbam.onnx --golden exports/cbam/cbam.golden.npz

## test: the default suite (under 15 minutes on 2 cores); slow matrix runs are excluded
test: $(STAMP)
	$(BIN)/python -m pytest -q

## test-slow: the exhaustive block x opset x exporter x shape-mode matrix
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

## matrix: measure every block x form x exporter x opset x shape mode and print the outcomes
matrix: $(STAMP)
	$(BIN)/python tools/export_matrix.py

## bench: every tier-1 block at 1x256x56x56 and 1x64x160x160, naive and deploy over a one-pass floor
bench: $(STAMP)
	$(BIN)/python tools/bench_blocks.py

## int8-gate-plans: a CBAM-augmented YOLOv8n at INT8: each CBAM's gate error with our plan (gates
## float, F2) against Ultralytics' own plan (only the head's Sigmoid excluded), same calibration set
.PHONY: int8-gate-plans
int8-gate-plans: $(STAMP)
	$(BIN)/python tools/int8_gate_plans.py

## readme: regenerate the README's block table from the registry
readme: $(STAMP)
	$(BIN)/python tools/update_readme.py

## docker-test: build docker/Dockerfile.jetson and docker/Dockerfile with buildah (installed with
## apt-get when missing) from a local Debian base, then export, validate, doctor (and serve) inside them
docker-test: $(STAMP)
	PYTHON=$(BIN)/python tools/docker_test.sh

lint: $(STAMP)
	$(BIN)/ruff check attn_export tests

clean:
	rm -rf $(VENV) exports build *.egg-info
