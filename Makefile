# The environment is made here, not assumed: torch is installed first and pinned to the CPU build
# (any other torch spec pulls GBs of CUDA packages), then the package and its extras, then the real
# TensorRT Python bindings 10.3 / 10.13 / 10.16 / 11.4 with a C stub of their native libraries
# (unpacked in build/trt-bindings, not installed) that tests/runtime/test_trt_surface.py (the fake)
# and tests/runtime/test_trt_calls.py (our calls) check against.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH  := torch==2.13.0

.PHONY: demo test browser test-slow matrix bench accuracy tables docs lint docker-test clean

$(STAMP): pyproject.toml tools/trt_bindings.py tools/trt_stub.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[torch,serve,dev,docs]'
	$(BIN)/python tools/trt_bindings.py build/trt-bindings
	touch $(STAMP)

## demo: export CBAM at opset 17, simplify, validate in ONNX Runtime vs PyTorch, re-check the golden file
demo: $(STAMP)
	$(BIN)/attn-export cbam --opset 17
	$(BIN)/attn-export validate exports/cbam/cbam.onnx --golden exports/cbam/cbam.golden.npz

## test: the default suite (under 6 minutes on 2 cores): one case per behaviour, sweeps excluded
test: $(STAMP) browser
	$(BIN)/python -m pytest -q

## browser: Debian's chromium, in which the report tests open the HTML pages (installed with apt-get
## when missing and this is root; otherwise those tests skip and say why)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the browser tests will skip"

## test-slow: the exhaustive sweeps (full block matrix, every size/width/exporter of a block test)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

## matrix: measure every block x form x exporter x opset x shape mode x precision (resumable, both
## cores): docs/matrix.json, matrix.html (sortable, filterable) and the table in docs/compatibility.md
matrix: $(STAMP)
	$(BIN)/python tools/export_matrix.py --out docs/matrix.json --html matrix.html \
		--markdown docs/compatibility.md $(MATRIX_ARGS)

## bench: every tier-1 block at 1x256x56x56 and 1x64x160x160, naive and deploy end to end over a
## one-pass floor, written into docs/speed.md (run it on an idle machine: the page records the load)
bench: $(STAMP)
	$(BIN)/python tools/bench_blocks.py --profile --write docs/speed.md

## tables: regenerate the generated tables of docs/ (blocks, networks) from the registries
tables: $(STAMP)
	$(BIN)/python tools/update_docs_tables.py

## docs: build the documentation site into build/site; --strict fails on a broken link or anchor
# (NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2, which pyproject pins out; no
# --quiet: it hides the warnings that --strict counts, and a broken link then passes)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## accuracy: top-1 of the trained digits network (CBAM + SE) at fp32, fp16 and INT8 (gates float
## and quantized) beside plain ONNX Runtime quantization; refresh docs/accuracy.md with
## `$(BIN)/python tools/accuracy.py --markdown docs/accuracy.md`
accuracy: $(STAMP)
	$(BIN)/python tools/accuracy.py

## int8-gate-plans: a CBAM-augmented YOLOv8n at INT8: each CBAM's gate error with our plan (gates
## float, F2) against Ultralytics' own plan (only the head's Sigmoid excluded), same calibration set
.PHONY: int8-gate-plans
int8-gate-plans: $(STAMP)
	$(BIN)/python tools/int8_gate_plans.py

## docker-test: build docker/Dockerfile.jetson (JetPack 7.2 and 6) and docker/Dockerfile with buildah
## (installed with apt-get when missing) from local Debian bases, then run each like docker run (own
## PID/mount/network namespaces, non-root uid, host-owned volume): export, doctor, validate, the
## TensorRT verbs' imports, serve answering tritonclient from outside, SIGTERM during load
docker-test: $(STAMP)
	PYTHON=$(BIN)/python tools/docker_test.sh

lint: $(STAMP)
	$(BIN)/ruff check attn_export tests

clean:
	rm -rf $(VENV) exports build *.egg-info
