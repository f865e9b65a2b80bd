"""What every image recipe under docker/ must respect, as functions that list the violations.

Kept apart from the tests so the tests can prove each rule fires on a bad recipe, not only that the
real recipes pass. Parsing is dockerfile-parse's; the rules are ours.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"

# Default bases a recipe may name: JetPack 7.2's ubuntu:24.04 (plus the Jetson apt repository) and
# JetPack 6's TensorRT runtime (or the full JetPack image); Python 3.11 on Debian for x86
# (TensorRT bases are chosen with --build-arg BASE).
ALLOWED_BASES = {
    "Dockerfile.jetson": {"ubuntu:24.04", "nvcr.io/nvidia/l4t-tensorrt:r10.3.0-runtime",
                          "nvcr.io/nvidia/l4t-jetpack:r36.4.0"},
    "Dockerfile": {"python:3.11-slim-bookworm", "nvcr.io/nvidia/tensorrt:24.08-py3"},
}
JETPACKS = {"7": "ubuntu:24.04", "6": "nvcr.io/nvidia/l4t-tensorrt:r10.3.0-runtime"}
"""--build-arg JETPACK=N -> the base the Jetson recipe's python stage builds on."""
ENTRYPOINT = '["tini", "--", "attn-export"]'
CMD = '["serve", "/models", "--host", "0.0.0.0"]'
IMAGE_ENV = {"HOME": "/data", "ATTN_EXPORT_CACHE": "/data/.cache/attn-export",
             "ATTN_EXPORT_HOST": "0.0.0.0", "ATTN_EXPORT_HTTP_PORT": "8000"}
"""What every image sets: all state under /data (a --user uid gets HOME=/ otherwise), the server
reachable through a published port, its port in one variable the HEALTHCHECK reads too."""

PIP_OPTIONS_WITH_VALUE = {"--index-url", "--extra-index-url", "--find-links", "-r", "--requirement"}
PIP_FLAGS = {"--no-deps", "--ignore-installed", '"$@"'}


def parse(text: str, build_args: dict | None = None) -> DockerfileParser:
    import io

    return DockerfileParser(fileobj=io.BytesIO(text.encode()), build_args=build_args or {})


def instructions(df: DockerfileParser, name: str) -> list[str]:
    return [s["value"] for s in df.structure if s["instruction"] == name]


def pip_installs(df: DockerfileParser) -> list[str]:
    """Every ``pip install ...`` command in the RUN lines, cut at the next shell separator."""
    found = []
    for run in instructions(df, "RUN"):
        for part in re.split(r"&&|;|\|\||\|", run):
            match = re.search(r"pip3?\s+install\s+(.*)", part)
            if match:
                found.append(match[1].strip())
    return found


def pip_violations(df: DockerfileParser) -> list[str]:
    """pip installs only ``-r /tmp/requirements/requirements-*.txt`` and our own wheel --no-deps."""
    bad = []
    for args in pip_installs(df):
        tokens = shlex.split(args.replace('"${', "${"), posix=False)
        i, leftovers, requirements = 0, [], []
        while i < len(tokens):
            tok = tokens[i]
            if tok in PIP_OPTIONS_WITH_VALUE:
                if tok in ("-r", "--requirement"):
                    requirements.append(tokens[i + 1])
                i += 2
                continue
            if tok not in PIP_FLAGS:
                leftovers.append(tok)
            i += 1
        wheel_only = leftovers == ["/tmp/wheels/*.whl"] and "--no-deps" in tokens
        if not wheel_only and (leftovers or not requirements):
            bad.append(f"pip install {args!r}: install from a docker/requirements-*.txt file")
        for req in requirements:
            if not re.fullmatch(r"/tmp/requirements/requirements-[\w${}-]+\.txt", req.strip('"')):
                bad.append(f"pip install -r {req}: not a copied docker/requirements-*.txt")
    return bad


def base_violations(df: DockerfileParser, recipe: str) -> list[str]:
    """Every FROM is an allowed, explicitly tagged base or an earlier stage."""
    bad, stages = [], set()
    for value, parent in zip(instructions(df, "FROM"), df.parent_images, strict=True):
        if parent not in stages and parent not in ALLOWED_BASES[recipe]:
            bad.append(f"base {parent!r} is neither an allowed base ({sorted(ALLOWED_BASES[recipe])})"
                       " nor an earlier stage")
        if match := re.search(r"\bAS\s+(\S+)", value, re.I):
            stages.add(match[1])
    return bad


def python_stage_base(df: DockerfileParser) -> str:
    """The image the ``python`` stage ends up on, following stage names (``base-${JETPACK}``)."""
    stage_parent = {}
    for value, parent in zip(instructions(df, "FROM"), df.parent_images, strict=True):
        if match := re.search(r"\bAS\s+(\S+)", value, re.I):
            stage_parent[match[1]] = parent
    base = stage_parent["python"]
    while base in stage_parent:
        base = stage_parent[base]
    return base


def expand(text: str, args: dict[str, str]) -> str:
    """``${NAME}`` / ``$NAME`` of the given build args replaced (dockerfile-parse leaves them)."""
    for name, value in args.items():
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    return text


def jetson_violations(df: DockerfileParser, requirements: list[str]) -> list[str]:
    """No torch, no pip tensorrt, no build step that imports tensorrt, numpy < 2."""
    bad = []
    names = [re.split(r"[=<>!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements]
    bad += [f"{n} is pip-installed in the Jetson image" for n in names
            if n == "torch" or n.startswith("tensorrt")]
    for run in instructions(df, "RUN"):
        if re.search(r"import\s+tensorrt|attn-export\s+(doctor|build)", run):
            bad.append(f"RUN imports tensorrt at build time: {run[:60]!r}")
        if re.search(r"pip3?\s+install[^&;]*\b(torch|tensorrt)\b", run):
            bad.append(f"RUN pip-installs torch or tensorrt: {run[:60]!r}")
    return bad


def jetpack6_numpy_violations(requirements: list[str]) -> list[str]:
    """JetPack 6's onnxruntime-gpu wheels are built against numpy 1.x."""
    numpy = [r for r in requirements if r.lower().startswith("numpy")]
    if not numpy or not re.fullmatch(r"numpy==1\.\d+\.\d+", numpy[0]):
        return [f"numpy must be pinned below 2 (numpy==1.x.y), found {numpy}"]
    return []


def runtime_violations(df: DockerfileParser) -> list[str]:
    """The serving contract, a non-root user, and no CA bundle or PIP_CERT baked into the image."""
    bad = []
    if instructions(df, "ENTRYPOINT") != [ENTRYPOINT]:
        bad.append(f"ENTRYPOINT must be {ENTRYPOINT} (an init as PID 1)")
    if instructions(df, "CMD") != [CMD]:
        bad.append(f"CMD must be {CMD}")
    checks = instructions(df, "HEALTHCHECK")
    if not checks or not all("/v2/health/ready" in h and "ATTN_EXPORT_HTTP_PORT" in h
                             and ":8000/" not in h for h in checks):
        bad.append("HEALTHCHECK must poll /v2/health/ready on the port ATTN_EXPORT_HTTP_PORT names")
    env = {}
    for value in instructions(df, "ENV"):
        env.update(dict(re.findall(r"(\w+)=(\S+)", value)))
    wrong = {k: env.get(k) for k, v in IMAGE_ENV.items() if env.get(k) != v}
    if wrong:
        bad.append(f"ENV must set {IMAGE_ENV}; differs at {wrong}")
    if instructions(df, "EXPOSE") != ["8000 8001 8002"]:
        bad.append("EXPOSE must be 8000 8001 8002")
    users = instructions(df, "USER")
    if not users or users[-1].split(":")[0] in ("0", "root"):
        bad.append("the last USER must be a non-root user")
    if any("PIP_CERT" in e or "REQUESTS_CA_BUNDLE" in e for e in instructions(df, "ENV")):
        bad.append("a CA bundle path is baked into ENV; mount it as a build secret")
    for copy in instructions(df, "COPY") + instructions(df, "ADD"):
        if re.search(r"\.(crt|pem)\b", copy):
            bad.append(f"COPY of a certificate: {copy!r}")
    return bad


def requirement_lines(path: Path) -> list[str]:
    return [ln.split("#")[0].strip() for ln in path.read_text().splitlines() if ln.split("#")[0].strip()]


def copied_requirements(df: DockerfileParser, args: dict[str, str] | None = None) -> list[Path]:
    return [ROOT / expand(src, args or {}) for copy in instructions(df, "COPY")
            for src in copy.split()[:-1] if src.startswith("docker/requirements")]
