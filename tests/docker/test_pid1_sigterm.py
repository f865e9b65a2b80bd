"""``docker stop`` on an export: SIGTERM to ``attn-export`` running as PID 1 of its own PID namespace.

The image's ENTRYPOINT is ``attn-export``, so without an init it is PID 1, and the kernel drops
every signal PID 1 has no handler for. The export runs here as PID 1 of a namespace made with
``unshare --pid --fork --mount-proc``, exactly as in a container, and a real SIGTERM arrives at
two points through the fault hook (``ATTN_EXPORT_FAULT_AT`` with ``ATTN_EXPORT_FAULT_SIGNAL=TERM``):
while the set is being staged (it must be discarded) and after the commit's journal is written
(the set is decided: it must land whole). Either way the process ends there, exit status 143, one
line on stderr, and the folder holds one consistent set or nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attn_export.atomic import sha256_file, staging_folders

ROOT = Path(__file__).resolve().parents[2]


def unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not unshare_works(),
                                reason="unshare --pid needs root (or user namespaces) here")


def export_as_pid1(out: Path, fault: str) -> subprocess.CompletedProcess:
    """``attn-export cbam --opset 17 --output-dir OUT`` as PID 1, a SIGTERM at ``fault``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               ATTN_EXPORT_FAULT_AT=fault, ATTN_EXPORT_FAULT_SIGNAL="TERM")
    code = ("import os, sys\nassert os.getpid() == 1, os.getpid()\n"
            "from attn_export.cli import main\nsys.argv[0] = 'attn-export'\nmain()\n")
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code,
                           "cbam", "--opset", "17", "--output-dir", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_sigterm_while_staging_discards_the_set_and_ends_the_process(tmp_path):
    out = tmp_path / "cbam"
    proc = export_as_pid1(out, "staged:cbam.onnx")
    assert proc.returncode == 143, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines()[-1].startswith("error: terminated (SIGTERM)")
    assert "Traceback" not in proc.stderr
    assert not out.exists() or (list(out.iterdir()) == [] and not staging_folders(out))


def test_sigterm_during_the_commit_lands_the_whole_set_then_ends_the_process(tmp_path):
    out = tmp_path / "cbam"
    proc = export_as_pid1(out, "commit:journal")
    assert proc.returncode == 143, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines()[-1].startswith("error: terminated (SIGTERM)")
    assert not staging_folders(out)
    names = sorted(p.name for p in out.iterdir())
    assert {"cbam.onnx", "cbam.golden.npz", "report.json"} <= set(names), names
    report = json.loads((out / "report.json").read_text())
    hashes = report["sha256"]  # {file name: sha256} of every artefact of the set
    assert "cbam.onnx" in hashes and "cbam.golden.npz" in hashes, hashes
    for name, digest in hashes.items():
        assert sha256_file(out / name) == digest, name


def test_the_handler_keeps_one_a_command_installed_and_redelivery_never_drops_sigterm():
    """serve installs its own draining handler: ours must not replace it. A SIGTERM held back
    under the default disposition comes back as Terminated, which PID 1 cannot drop."""
    import signal

    from attn_export.termination import Terminated, install_sigterm_handler, redeliver

    previous = signal.getsignal(signal.SIGTERM)
    try:
        def own(_signum, _frame):
            return None

        signal.signal(signal.SIGTERM, own)
        assert install_sigterm_handler() is False and signal.getsignal(signal.SIGTERM) is own
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert install_sigterm_handler() is True
        with pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)
        with pytest.raises(Terminated):
            redeliver(signal.SIGTERM, signal.SIG_DFL)
        redeliver(signal.SIGTERM, signal.SIG_IGN)  # ignored stays ignored
    finally:
        signal.signal(signal.SIGTERM, previous)
