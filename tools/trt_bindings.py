"""Fetch the real TensorRT Python bindings (10.3, 10.13, 10.16, 11.4) and a C stub of their libs.

The ``tensorrt-cu12-bindings`` / ``tensorrt-cu13-bindings`` wheels hold only
``tensorrt_bindings/tensorrt.so``, which links
``libnvinfer.so.N``, ``libnvonnxparser.so.N`` and ``libnvinfer_plugin.so.N`` (N = 10 or 11).
Those libraries need a GPU driver and cannot be installed here; ``tools/trt_stub.c`` stands in
for them (every factory returns NULL), after which ``import tensorrt_bindings`` gives the whole
API of that version: classes, methods, properties, enums and pybind's signatures. The test
``tests/runtime/test_trt_calls.py`` checks our TensorRT calls and ``tests/runtime/test_trt_surface.py``
the fake TensorRT of the engine and runner tests against it.

Run by the Makefile's environment step (never at test time, which must not download)::

    python tools/trt_bindings.py [DEST]        # default build/trt-bindings

Each version lands unpacked (not installed: three versions coexist) in ``DEST/<version>/`` with
the stub in ``DEST/<version>/lib/``. Without a C compiler it says so and exits 0: the surface test
then skips with that reason. A failed download is an error (the surface test would be skipped
for a reason that hides a broken set-up).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGES = {
    "10.3.0": "tensorrt-cu12-bindings",       # JetPack 6.1/6.2
    "10.13.0.35": "tensorrt-cu12-bindings",   # JetPack 7.0/7.1 (Thor)
    "10.16.1.11": "tensorrt-cu13-bindings",   # JetPack 7.2 (CUDA 13; PyPI's newest 10.16)
    "11.4.0.106": "tensorrt-cu12-bindings",
}
"""Version -> the wheel its bindings come from. The API surface does not depend on the CUDA
major; 10.16 is taken from the CUDA 13 wheel because JetPack 7.2 is CUDA 13."""
VERSIONS = tuple(PACKAGES)
LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin")
ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "tools" / "trt_stub.c"
DEFAULT_DEST = ROOT / "build" / "trt-bindings"
STUB_SYMBOLS = frozenset({
    "createInferBuilder_INTERNAL", "createInferRuntime_INTERNAL", "createInferRefitter_INTERNAL",
    "createNvOnnxParser_INTERNAL", "createNvOnnxParserRefitter_INTERNAL", "getPluginRegistry",
    "getBuilderPluginRegistry", "initLibNvInferPlugins", "getNvOnnxParserVersion",
    "getInferLibVersion",
})
"""What the stub defines: the bindings' undefined symbols that are not Python's, the C++
runtime's or libc's (checked against ``nm -D --undefined-only`` after every build)."""


def download(version: str, dest: Path) -> Path:
    """The wheel of ``version``, unpacked into ``dest`` (replaced atomically)."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--disable-pip-version-check", "-d", tmp,
                        f"{PACKAGES[version]}=={version}"],
                       check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(unpacked)
        if dest.exists():
            shutil.rmtree(dest)
        unpacked.rename(dest)
    return dest


def build_stub(compiler: str, major: int, lib_dir: Path) -> None:
    """``lib_dir/lib{nvinfer,nvonnxparser,nvinfer_plugin}.so.<major>`` from the C stub."""
    lib_dir.mkdir(parents=True, exist_ok=True)
    for name in LIBRARIES:
        soname = f"lib{name}.so.{major}"
        subprocess.run([compiler, "-shared", "-fPIC", "-O1", f"-DSTUB_VERSION={major * 10000}",
                        f"-Wl,-soname,{soname}", "-o", str(lib_dir / soname), str(STUB)],
                       check=True)


def undefined_entry_points(binding: Path) -> set[str]:
    """TensorRT's C entry points the binding needs: its undefined dynamic symbols minus Python's,
    C++'s (mangled), libc's (versioned) and the dynamic loader's."""
    out = subprocess.run(["nm", "-D", "--undefined-only", str(binding)], check=True,
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[-2] != "U":
            continue
        name = parts[-1]
        if "@" in name or name.startswith(("Py", "_Py", "_Z")) or name in ("dlopen", "dlsym",
                                                                              "dlclose"):
            continue
        names.add(name)
    return names


def prepare(version: str, dest_root: Path, compiler: str) -> Path:
    """Download, unpack and stub one version; returns its folder."""
    target = dest_root / version
    marker = target / ".complete"
    if not marker.is_file():
        download(version, target)
    build_stub(compiler, int(version.split(".")[0]), target / "lib")
    binding = target / "tensorrt_bindings" / "tensorrt.so"
    if shutil.which("nm"):
        missing = undefined_entry_points(binding) - STUB_SYMBOLS
        if missing:
            raise SystemExit(f"{binding} needs {sorted(missing)}, which tools/trt_stub.c lacks; "
                             "add them to the stub and STUB_SYMBOLS")
    marker.write_text(version + "\n")
    return target


def main(argv: list[str]) -> int:
    dest_root = Path(argv[0]) if argv else DEFAULT_DEST
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        print("trt_bindings: no C compiler (cc, gcc, clang): the TensorRT surface test will skip",
              file=sys.stderr)
        return 0
    dest_root.mkdir(parents=True, exist_ok=True)
    for version in VERSIONS:
        print(f"trt_bindings: {PACKAGES[version]} {version} -> "
              f"{prepare(version, dest_root, compiler)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
