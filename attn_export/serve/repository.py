"""Triton's model-repository layout, written from export folders and read back for serving.

```
REPO/<model>/config.pbtxt
REPO/<model>/attn-export.json        precision and golden file (Triton ignores it)
REPO/<model>/1/model.onnx            ONNX Runtime (onnxruntime_onnx)
REPO/<model>/1/model.plan            TensorRT engine (tensorrt_plan), with model.plan.json sidecar
REPO/<model>/1/model.golden.npz      validation inputs and PyTorch outputs
```
The repository is built in a temporary folder beside the target (same filesystem) and renamed
into place, so a failed run leaves nothing half-written and a reader never sees a partial one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from attn_export.errors import ModelFileError
from attn_export.serve.config import (
    PLATFORMS,
    BatchOptions,
    ConfigError,
    ModelSpec,
    build_config,
    check_name,
    parse_config,
    to_pbtxt,
)
from attn_export.serve.config_checks import check_config
from attn_export.serve.model_io import ModelIO, onnx_io, sidecar_io

META_FILE = "attn-export.json"
GOLDEN_FILE = "model.golden.npz"


@dataclass(frozen=True)
class ExportSource:
    """The files of one export folder that a repository model is made of."""

    export_dir: Path
    block: str
    precision: str
    onnx: Path | None
    engine: Path | None
    golden: Path | None


def source_from_export(export_dir: str | Path, precision: str = "fp32") -> ExportSource:
    """Find the ONNX (of ``precision``), engine and golden file of an ``attn-export BLOCK`` folder."""
    export_dir = Path(export_dir)
    report_path = export_dir / "report.json"
    if not report_path.is_file():
        raise ModelFileError(f"{export_dir} is not an export folder (no report.json); export one with "
                             "`attn-export BLOCK --dynamic batch --output-dir DIR`")
    try:
        report = json.loads(report_path.read_text())
        block, files = str(report["block"]), report["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{report_path} is not an attn-export report ({exc}); re-export") from None
    onnx_name = files.get("onnx") if precision == "fp32" else (report.get(precision) or {}).get("file")
    onnx = export_dir / onnx_name if onnx_name and (export_dir / onnx_name).is_file() else None
    engine = export_dir / f"{block}.{precision}.engine"
    engine = engine if engine.is_file() else None
    if onnx is None and engine is None:
        raise ModelFileError(f"{export_dir} has no {precision} model: neither a {precision} ONNX in "
                             f"report.json nor {block}.{precision}.engine; export with "
                             f"--precision {precision} (and --engine for a plan)")
    golden = export_dir / files["golden"] if files.get("golden") else None
    return ExportSource(export_dir, block, precision, onnx,
                        engine, golden if golden is not None and golden.is_file() else None)


def engine_spec(name: str, engine: Path) -> ModelSpec:
    from attn_export.runtime.sidecar import read_sidecar

    sidecar = read_sidecar(engine)
    if sidecar is None:
        raise ConfigError(f"engine {engine} has no .engine.json sidecar: its optimization profiles "
                          "are unknown, so max_batch_size cannot be checked; rebuild it with "
                          "`attn-export build`")
    return ModelSpec(name, "tensorrt_plan", sidecar_io(sidecar.io), list(sidecar.profiles))


@dataclass(frozen=True)
class PlannedModel:
    name: str
    source: ExportSource
    spec: ModelSpec
    config: object  # ModelConfig


def plan_model(name: str, source: ExportSource, prefer: str, options: BatchOptions) -> PlannedModel:
    """Choose the platform, build the config and check it; nothing is written yet."""
    check_name(name)
    use_plan = source.engine is not None and (prefer == "plan" or source.onnx is None)
    spec = engine_spec(name, source.engine) if use_plan else \
        ModelSpec(name, "onnxruntime_onnx", onnx_io(source.onnx))
    cfg = build_config(spec, options)
    check_config(cfg, spec)
    check_config(parse_config(to_pbtxt(cfg)), spec)  # what Triton will read back
    return PlannedModel(name, source, spec, cfg)


def _write_model(root: Path, planned: PlannedModel) -> None:
    model_dir = root / planned.name
    version = model_dir / "1"
    version.mkdir(parents=True)
    src = planned.source
    if src.onnx is not None:
        shutil.copyfile(src.onnx, version / "model.onnx")
    if src.engine is not None:
        shutil.copyfile(src.engine, version / "model.plan")
        shutil.copyfile(src.engine.with_name(src.engine.name + ".json"), version / "model.plan.json")
    if src.golden is not None:
        shutil.copyfile(src.golden, version / GOLDEN_FILE)
    (model_dir / "config.pbtxt").write_text(to_pbtxt(planned.config))
    meta = {"block": src.block, "precision": src.precision, "source": str(src.export_dir),
            "golden": f"1/{GOLDEN_FILE}" if src.golden is not None else None}
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def write_repository(models: list[PlannedModel], out: str | Path, force: bool = False) -> Path:
    """Write ``models`` as a Triton repository at ``out``, atomically (build beside, rename)."""
    out = Path(out)
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"model names {dupes} appear twice; give each export its own --name")
    if out.exists() and not out.is_dir():
        raise ModelFileError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ModelFileError(f"{out} exists and is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for planned in models:
            _write_model(tmp, planned)
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap_into_place(tmp: Path, out: Path) -> None:
    if out.is_dir() and any(out.iterdir()):
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)  # an empty folder is replaced in one step


# --------------------------------------------------------------------------------------------------
# Reading a repository back (the server)
# --------------------------------------------------------------------------------------------------


@dataclass
class RepoModel:
    """One model folder as the server sees it; ``problem`` says why it cannot be served."""

    name: str
    version: str
    path: Path | None
    config: object | None
    spec: ModelSpec | None
    golden: Path | None
    precision: str
    problem: str | None = None


def _inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def read_model(repo: Path, model_dir: Path) -> RepoModel:
    """Parse and check one model folder; every failure becomes ``problem``, never an exception."""
    name = model_dir.name
    model = RepoModel(name, "", None, None, None, None, "fp32")
    try:
        check_name(name)
        cfg = parse_config((model_dir / "config.pbtxt").read_text(), model_dir / "config.pbtxt")
        model.config = cfg
        versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
        if not versions:
            raise ModelFileError(f"{model_dir} has no version folder (e.g. {name}/1/)")
        model.version = str(versions[-1])
        filename = cfg.default_model_filename or PLATFORMS.get(cfg.platform, "")
        path = model_dir / model.version / filename
        if not filename or not path.is_file() or not _inside(repo, path):
            raise ModelFileError(f"{name}: no {filename or 'model file'} for platform {cfg.platform!r} in "
                                 f"{model_dir / model.version} (inside the repository)")
        model.path = path
        io: ModelIO = onnx_io(path) if cfg.platform == "onnxruntime_onnx" else None
        model.spec = engine_spec(name, path) if io is None else ModelSpec(name, cfg.platform, io)
        check_config(cfg, model.spec)
        _read_meta(repo, model_dir, model)
    except (ModelFileError, OSError) as exc:
        model.problem = str(exc)
    return model


def _read_meta(repo: Path, model_dir: Path, model: RepoModel) -> None:
    meta_path = model_dir / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    model.precision = str(meta.get("precision", "fp32"))
    golden = model_dir / str(meta.get("golden") or f"{model.version}/{GOLDEN_FILE}")
    model.golden = golden if golden.is_file() and _inside(repo, golden) else None


def scan_repository(repo: str | Path) -> list[RepoModel]:
    """Every model folder of ``repo`` (hidden folders skipped), each parsed and checked."""
    repo = Path(repo)
    if not repo.is_dir():
        raise ModelFileError(f"model repository {repo} is not a folder; make one with "
                             "`attn-export repo EXPORT_DIR... --out DIR`")
    models = [read_model(repo, d) for d in sorted(repo.iterdir())
              if d.is_dir() and not d.name.startswith(".")]
    if not models:
        raise ModelFileError(f"model repository {repo} holds no model folders")
    return models
