"""Do a model and a golden file belong together? Answered from the hashes recorded at export.

The export records BLOCK.onnx's sha256 in the golden file's meta and every artefact's sha256 in
report.json; the ONNX carries its block's name in its metadata. So ``validate`` can tell a pair
from one export (or a precision graph or engine derived from it) from two files of different
blocks that merely share a shape, and name both blocks instead of printing a generic "differs".
Torch-free: reads only the ONNX metadata, the sidecar and the report.
"""

from __future__ import annotations

import json
from pathlib import Path

from attn_export.atomic import sha256_file
from attn_export.errors import ModelFileError
from attn_export.runtime.golden import Golden


def model_block(model_path: Path) -> str | None:
    """The block an ONNX file says it holds (``attn_export.block`` metadata), None if unknown."""
    if model_path.suffix != ".onnx":
        return None
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - unreadable files are reported by the runner, not here
        return None
    return next((p.value for p in model.metadata_props if p.key == "attn_export.block"), None)


def _recorded_hashes(model_path: Path) -> dict[str, str]:
    report = model_path.parent / "report.json"
    try:
        return dict(json.loads(report.read_text()).get("sha256", {})) if report.is_file() else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _graph_hash(model_path: Path) -> tuple[str, str]:
    """(file name, sha256) of the ONNX graph behind ``model_path`` (an engine: its sidecar's)."""
    if model_path.suffix in (".engine", ".plan", ".trt"):
        sidecar = model_path.with_name(model_path.name + ".json")
        try:
            onnx_entry = json.loads(sidecar.read_text())["onnx"]
            return onnx_entry["file"], onnx_entry["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return model_path.name, sha256_file(model_path)
    return model_path.name, sha256_file(model_path)


def provenance_note(model_path: str | Path, golden_path: str | Path, golden: Golden) -> str | None:
    """None when ``golden`` was recorded for ``model_path`` (directly or via report.json beside it);
    a note when that cannot be shown (the comparison then decides); raises when the two name
    different blocks."""
    model_path, golden_path = Path(model_path), Path(golden_path)
    gold_block, mine = golden.meta.get("block"), model_block(model_path)
    if gold_block and mine and gold_block != mine:
        raise ModelFileError(
            f"{golden_path} was written for block {gold_block!r} but {model_path} holds block "
            f"{mine!r}: they do not belong together; pass {mine}'s golden file "
            f"({mine}.golden.npz from the same export)")
    recorded = golden.meta.get("model_sha256")
    if not recorded:
        return None  # a golden file from before hashes were recorded: nothing to check against
    name, digest = _graph_hash(model_path)
    if digest == recorded:
        return None
    hashes = _recorded_hashes(model_path)
    if hashes.get(name) == digest and hashes.get(golden_path.name) == sha256_file(golden_path):
        return None  # a precision graph (or its engine) recorded in the same export's report
    return (f"{model_path.name} is not the model {golden_path.name} was recorded with "
            f"({gold_block or 'unknown block'}; sha256 differs and report.json beside it does not "
            "list it): judging it by its outputs alone")
