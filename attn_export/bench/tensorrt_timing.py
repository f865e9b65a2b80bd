"""TensorRT engines timed on the GPU: CUDA events around ``execute_async_v3`` (or a CUDA graph).

The engine is opened with :class:`~attn_export.runtime.tensorrt_runner.TensorRTRunner` first (its
public interface only): that checks the sidecar against this machine, deserializes the plan, and
runs the input once, so a bench never times an engine that cannot give an answer. The timed loop
then keeps device buffers resident and records one CUDA event between launches, so each sample
is GPU time without host copies (as ``trtexec`` reports "GPU Compute Time"). ``--use-cuda-graph``
captures one launch into a CUDA graph and replays it, which removes the per-launch CPU cost of
small engines; where capture fails (an engine TensorRT must enqueue with host synchronisation), the
bench says so and times plain launches. The floor is the one-``Mul`` ONNX built into an engine of
the same precision with ``build_engine``.

No GPU here: the round loop, the result and the CLI path are tested with a fake loop, and
:class:`EngineLoop` over the fake TensorRT and a fake of the cuda-python runtime calls it makes
(events, stream capture, graphs), which follow cuda-python's runtime API.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from attn_export.bench.graphs import FLOOR, floor_onnx
from attn_export.bench.run import (
    MODEL,
    BenchResult,
    BenchSettings,
    input_array,
    resolve_shapes,
    summarize,
)
from attn_export.bench.timing import interleaved_bursts
from attn_export.errors import AttnExportError, MissingDependencyError, ValidationError
from attn_export.runtime.cuda_memory import CUDA_PYTHON_HINT as _INSTALL

CUDA_PYTHON_HINT = f"timing a TensorRT engine needs cuda-python for CUDA events and graphs: {_INSTALL}"


def cudart():
    """cuda-python's runtime module, or a MissingDependencyError saying how to get it."""
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError as exc:
            raise MissingDependencyError(CUDA_PYTHON_HINT) from exc
    return runtime


def _ok(rt, result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise ValidationError(f"{what} failed: {err}; check the driver and the GPU")
    return rest[0] if len(rest) == 1 else rest


class EngineLoop:
    """An engine with resident buffers, launched on its own stream and timed with CUDA events.

    Opened like the runner opens engines (:func:`~attn_export.runtime.trt_engine.open_engine`:
    lean runtime, host code for version-compatible plans, TensorRT's reason when it refuses the
    plan); memory from the runner's cuda-python backend. ``rt`` is cuda-python's runtime module
    (events, graphs), given by tests.
    """

    def __init__(self, engine_path: Path, feed: dict[str, np.ndarray], use_cuda_graph: bool,
                 rt=None):
        from attn_export.runtime import cuda_memory
        from attn_export.runtime.sidecar import read_sidecar
        from attn_export.runtime.tensorrt_runner import import_tensorrt
        from attn_export.runtime.trt_engine import open_engine

        trt, self.rt = import_tensorrt(), rt or cudart()
        self.graph = self.graph_exec = None
        self.note = ""
        self.opened = open_engine(trt, engine_path, read_sidecar(engine_path))
        engine = self.opened.engine
        self.context = engine.create_execution_context()
        self.cuda = cuda_memory.cuda_backend("cuda-python")
        self.buffers = cuda_memory.ResidentBuffers(self.cuda)
        try:
            self._bind(feed)
            self.launch()  # TensorRT settles shapes on the first enqueue; capture after it
            if use_cuda_graph:
                self._capture()
        except BaseException:
            self.close()
            raise

    @property
    def stream(self):
        return self.cuda.stream

    def _bind(self, feed) -> None:
        from attn_export.runtime.trt_engine import set_input_shapes

        io = self.opened.io
        set_input_shapes(self.context, {t.name: feed[t.name].shape for t in io if t.is_input},
                         "bench")
        for t in io:
            if t.is_input:
                self._address(t.name, self.buffers.upload(t.name, feed[t.name]))
        for t in io:
            if not t.is_input:
                shape = tuple(int(d) for d in self.context.get_tensor_shape(t.name))
                nbytes = int(np.prod(shape)) * np.dtype(t.dtype).itemsize
                self._address(t.name, self.buffers.address(t.name, nbytes))
        self.cuda.synchronize()

    def _address(self, name: str, address: int) -> None:
        if not self.context.set_tensor_address(name, address):
            raise ValidationError(f"TensorRT refused the device address of tensor {name!r}")

    def _capture(self) -> None:
        rt = self.rt
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        try:
            _ok(rt, rt.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")
            self.context.execute_async_v3(self.cuda.stream_handle())
            self.graph = _ok(rt, rt.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
            self.graph_exec = _ok(rt, rt.cudaGraphInstantiate(self.graph, 0),
                                  "cudaGraphInstantiate")
        except ValidationError as exc:
            self.note = (f"the engine could not be captured into a CUDA graph ({exc}); timed "
                         "with plain launches")
            self._destroy_graph()

    def _destroy_graph(self) -> None:
        if self.graph_exec is not None:
            self.rt.cudaGraphExecDestroy(self.graph_exec)
        if self.graph is not None:
            self.rt.cudaGraphDestroy(self.graph)
        self.graph = self.graph_exec = None

    def launch(self) -> None:
        if self.graph_exec is not None:
            _ok(self.rt, self.rt.cudaGraphLaunch(self.graph_exec, self.stream), "cudaGraphLaunch")
        elif not self.context.execute_async_v3(self.cuda.stream_handle()):
            raise ValidationError("execute_async_v3 failed while timing the engine")

    def burst(self, iters: int) -> list[float]:
        """``iters`` launches with an event between each; seconds per launch (GPU time)."""
        rt = self.rt
        events = [_ok(rt, rt.cudaEventCreate(), "cudaEventCreate") for _ in range(iters + 1)]
        try:
            _ok(rt, rt.cudaEventRecord(events[0], self.stream), "cudaEventRecord")
            for i in range(iters):
                self.launch()
                _ok(rt, rt.cudaEventRecord(events[i + 1], self.stream), "cudaEventRecord")
            _ok(rt, rt.cudaEventSynchronize(events[-1]), "cudaEventSynchronize")
            return [_ok(rt, rt.cudaEventElapsedTime(a, b), "cudaEventElapsedTime") / 1e3
                    for a, b in zip(events, events[1:])]
        finally:
            for ev in events:
                rt.cudaEventDestroy(ev)

    def close(self) -> None:
        """Graph, graph exec, buffers, stream, context and engine, in that order."""
        self._destroy_graph()
        if self.buffers is not None:
            self.cuda.synchronize()
            self.buffers.release()
            self.cuda.close()
        self.buffers = None
        self.context = self.opened = None


LoopFactory = Callable[[Path, dict, bool], object]


def checked_input(engine: Path, shapes: Sequence[tuple[int, ...]], runner_cls=None):
    """Open the engine with the runner (sidecar check, deserialization), run each shape once;
    return the input name and the shapes to time."""
    from attn_export.runtime.tensorrt_runner import TensorRTRunner

    with (runner_cls or TensorRTRunner)(engine) as runner:
        spec = runner.input_spec()
        if len(spec) != 1:
            raise ValidationError(f"{engine} has {len(spec)} inputs; the bench times "
                                  "single-input engines")
        todo = resolve_shapes(spec[0].shape, shapes, str(engine))
        for shape in todo:
            outputs = runner.infer({spec[0].name: input_array(shape, 0)})
            if not all(np.isfinite(v).all() for v in outputs.values()):
                raise ValidationError(f"{engine} gives non-finite outputs at "
                                      f"{'x'.join(map(str, shape))}; validate it first")
    return spec[0].name, todo


def floor_engine(shape, name: str, precision: str, folder: Path) -> Path:
    """The floor ONNX at ``shape`` built into an engine of ``precision``."""
    from attn_export.export.engine_from_onnx import BuildOptions, build_engine

    onnx_path = floor_onnx(shape, folder / "floor.onnx", name)
    built = build_engine(onnx_path, BuildOptions(precision="fp16" if precision == "fp16"
                                                 else "fp32", use_timing_cache=False),
                         folder / "floor.engine")
    return built.engine_path


def bench_engine(engine: Path, shapes: Sequence[tuple[int, ...]], settings: BenchSettings,
                 use_cuda_graph: bool = False, loop: LoopFactory = EngineLoop,
                 runner_cls=None, floor_builder=floor_engine) -> BenchResult:
    """The engine (and its floor engine, where one can be built) interleaved at each shape."""
    from attn_export.runtime.sidecar import read_sidecar

    name, todo = checked_input(engine, shapes, runner_cls)
    sidecar = read_sidecar(engine)
    precision = getattr(sidecar, "precision", "fp32") if sidecar is not None else "fp32"
    result = BenchResult(str(engine), "engine", settings)
    for shape in todo:
        feed = {name: input_array(shape, settings.seed)}
        loops = {MODEL: loop(engine, feed, use_cuda_graph)}
        with tempfile.TemporaryDirectory(prefix="attn-export-bench-") as tmp:
            try:
                loops[FLOOR] = loop(floor_builder(shape, name, precision, Path(tmp)), feed,
                                    use_cuda_graph)
            except AttnExportError as exc:
                result.notes.append(f"no floor at {'x'.join(map(str, shape))}: {exc}")
            result.shapes.append(_time_loops(loops, shape, settings))
        result.notes += sorted({lp.note for lp in loops.values() if getattr(lp, "note", "")})
        for lp in loops.values():
            lp.close()
    return result


def _time_loops(loops: dict, shape, settings: BenchSettings):
    ordered = {FLOOR: loops[FLOOR]} if FLOOR in loops else {}
    ordered[MODEL] = loops[MODEL]
    for lp in ordered.values():
        lp.burst(max(1, settings.warmup))
    iters = settings.iters or 50
    samples = interleaved_bursts({role: lp.burst for role, lp in ordered.items()},
                                 settings.rounds, iters)
    return summarize(shape, samples, iters)
