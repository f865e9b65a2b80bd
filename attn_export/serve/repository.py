"""Triton's model-repository layout, written from export folders and read back for serving.

```
REPO/<model>/config.pbtxt
REPO/<model>/attn-export.json        precision and golden file (Triton ignores it)
REPO/<model>/1/model.onnx            ONNX Runtime (onnxruntime_onnx)
REPO/<model>/1/model.plan            TensorRT engine (tensorrt_plan), with model.plan.json sidecar
REPO/<model>/1/model.golden.npz      validation inputs and PyTorch outputs
REPO/<model>/1/model.sm87.plan       one engine per GPU compute capability, when the exports hold
REPO/<model>/1/model.sm110.plan      several (config.pbtxt's cc_model_filenames; device_plans.py)
```
The repository is built in a temporary folder beside the target (same filesystem) and renamed
into place, so a failed run leaves nothing half-written and a reader never sees a partial one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from attn_export.errors import ModelFileError
from attn_export.runtime.sidecar import sidecar_path
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
from attn_export.serve.device_plans import (
    by_capability,
    check_engines_agree,
    device_plan_problems,
    plan_file_name,
)
from attn_export.serve.engine_spec import engine_spec
from attn_export.serve.model_io import ModelIO, onnx_io

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
    engines: tuple[Path, ...] = ()
    """Every engine of this precision in the folder (``engine`` first): builds for other GPUs."""


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
    engines = ((engine,) if engine else ()) + _other_engines(export_dir, precision, engine)
    engine = engine or (engines[0] if engines else None)
    if onnx is None and engine is None:
        raise ModelFileError(f"{export_dir} has no {precision} model: neither a {precision} ONNX in "
                             f"report.json nor {block}.{precision}.engine; export with "
                             f"--precision {precision} (and --engine for a plan)")
    golden = export_dir / files["golden"] if files.get("golden") else None
    return ExportSource(export_dir, block, precision, onnx,
                        engine, golden if golden is not None and golden.is_file() else None, engines)


def _other_engines(export_dir: Path, precision: str, canonical: Path | None) -> tuple[Path, ...]:
    """``*.engine`` / ``*.plan`` files besides BLOCK.PRECISION.engine whose sidecar records
    ``precision``: the same export built on other devices (``se.fp16.thor.engine``)."""
    from attn_export.runtime.sidecar import read_sidecar

    found = []
    for path in sorted([*export_dir.glob("*.engine"), *export_dir.glob("*.plan")]):
        if path == canonical or not path.is_file():
            continue
        sidecar = read_sidecar(path)
        if sidecar is not None and sidecar.precision == precision:
            found.append(path)
    return tuple(found)


@dataclass(frozen=True)
class PlannedModel:
    name: str
    source: ExportSource
    spec: ModelSpec
    config: object  # ModelConfig
    plans: dict[str, Path] = field(default_factory=dict)
    """Compute capability -> engine, when the model holds one engine per device."""


def plan_models(named: list[tuple[str, ExportSource]], prefer: str,
                options: BatchOptions) -> list[PlannedModel]:
    """Plan every (name, export) pair; exports sharing a name whose engines were built on
    different GPUs become one model with an engine per compute capability. Other repeated names
    stay separate models, for :func:`write_repository` to refuse."""
    groups: dict[str, list[ExportSource]] = {}
    for name, source in named:
        groups.setdefault(name, []).append(source)
    planned = []
    for name, sources in groups.items():
        engines = [e for s in sources for e in s.engines]
        if len(engines) > 1 and all(s.engines for s in sources):
            planned.append(plan_device_model(name, sources, engines, prefer, options))
        else:
            planned += [plan_model(name, s, prefer, options) for s in sources]
    return planned


def plan_device_model(name: str, sources: list[ExportSource], engines: list[Path], prefer: str,
                      options: BatchOptions) -> PlannedModel:
    """One model holding an engine per GPU compute capability (``cc_model_filenames``); the ONNX
    and golden file come from the first export. Refuses two engines for one capability and
    engines that would not serve the same config."""
    check_name(name)
    plans = by_capability(name, engines)
    specs = {cc: engine_spec(name, path) for cc, path in plans.items()}
    check_engines_agree(name, specs, plans)
    source = next((s for s in sources if s.onnx is not None), sources[0])
    use_plan = prefer == "plan" or source.onnx is None
    default = next(iter(plans))  # the lowest capability: deterministic whatever the argument order
    spec = specs[default] if use_plan else ModelSpec(name, "onnxruntime_onnx", onnx_io(source.onnx))
    cfg = build_config(spec, options)
    if use_plan:
        cfg.default_model_filename = plan_file_name(default)
    for cc in plans:
        cfg.cc_model_filenames[cc] = plan_file_name(cc)
    for checked in ([specs[cc] for cc in plans] if use_plan else [spec]):
        check_config(cfg, checked)
    check_config(parse_config(to_pbtxt(cfg)), spec)
    return PlannedModel(name, source, spec, cfg, plans)


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
    for cc, engine in planned.plans.items():
        shutil.copyfile(engine, version / plan_file_name(cc))
        shutil.copyfile(sidecar_path(engine), version / f"{plan_file_name(cc)}.json")
    if src.engine is not None and not planned.plans:
        shutil.copyfile(src.engine, version / "model.plan")
        shutil.copyfile(sidecar_path(src.engine), version / "model.plan.json")
    if src.golden is not None:
        shutil.copyfile(src.golden, version / GOLDEN_FILE)
    (model_dir / "config.pbtxt").write_text(to_pbtxt(planned.config))
    meta = {"block": src.block, "precision": src.precision, "source": str(src.export_dir),
            "golden": f"1/{GOLDEN_FILE}" if src.golden is not None else None}
    if planned.plans:
        meta["engines"] = {cc: str(engine) for cc, engine in planned.plans.items()}
        problems = device_plan_problems(planned.config, version, planned.spec)
        if problems:
            raise ConfigError(f"model {planned.name!r}: " + "; ".join(problems))
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
        problems = device_plan_problems(cfg, model_dir / model.version, model.spec)
        if problems:
            raise ConfigError(f"config of model {name!r} would be refused: " + "; ".join(problems))
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
