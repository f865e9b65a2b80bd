"""Fault injection over `attn-export BLOCK`: interrupts at every stage, full and foreign
filesystems, read-only targets, two exports at once. After each, the output folder holds one
complete, self-consistent set (hashes match, `validate` passes) or nothing new."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from attn_export.atomic import FAULT_ENV, LOCK_NAME, sha256_file, staging_folders
from attn_export.cli import main

CLI = [sys.executable, "-c", "from attn_export.cli import main; main()"]
ROOT = str(Path(__file__).resolve().parents[1])  # the checkout under test, for the subprocesses


def _run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env)


def _assert_consistent(folder, block="se"):
    """Every file the report lists is there with its recorded hash, and validate passes."""
    report = json.loads((folder / "report.json").read_text())
    assert set(report["sha256"]) >= {f"{block}.onnx", f"{block}.golden.npz"}
    for name, digest in report["sha256"].items():
        assert sha256_file(folder / name) == digest, f"{name} is not the file the report describes"
    result = _run("validate", str(folder / f"{block}.onnx"), "--golden",
                  str(folder / f"{block}.golden.npz"))
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output  # the pair is recognised as one export's
    assert staging_folders(folder) == [] and not (folder / LOCK_NAME).exists()
    return report


def _snapshot(folder):
    return {p.name: sha256_file(p) for p in folder.iterdir()} if folder.exists() else {}


@pytest.fixture(scope="module")
def previous_set(tmp_path_factory):
    """A complete export with seed 1; the interrupted runs below use seed 2 (different bytes)."""
    folder = tmp_path_factory.mktemp("prev") / "se"
    result = _run("se", "--channels", "16", "--seed", "1", "--output-dir", str(folder))
    assert result.exit_code == 0, result.output
    return folder


STAGES = ["stage:build", "stage:torch", "stage:export", "stage:simplify", "stage:validate", "staged:se.onnx",
          "staged:se.golden.npz", "staged:report.json", "stage:write", "commit:journal",
          "commit:first-move", "committed"]


@pytest.mark.parametrize("point", STAGES)
def test_sigint_at_each_stage_leaves_the_old_set_or_the_whole_new_one(tmp_path, previous_set,
                                                                       point):
    folder = tmp_path / "se"
    shutil.copytree(previous_set, folder)
    before = _snapshot(folder)
    result = _run("se", "--channels", "16", "--seed", "2", "--output-dir", str(folder),
                  env={FAULT_ENV: point})
    assert result.exit_code == 1 and "interrupted" in result.output, result.output
    assert "Traceback" not in result.output
    after = _snapshot(folder)
    if point.startswith(("commit:", "committed")):  # the commit had begun: the new set, whole
        assert after != before
    else:
        assert after == before, f"interrupted at {point}, the folder changed"
    _assert_consistent(folder)


NETWORK = "my_net"
NETWORK_STAGES = [p.replace("se.", f"{NETWORK}.") for p in STAGES]


def _network(user_file, folder, seed, env=None):
    return _run("model", f"{user_file}:build", "--input-shape", "1x3x32x32", "--set", "width=8",
                "--seed", str(seed), "--output-dir", str(folder), env=env)


@pytest.fixture(scope="module")
def network_file(tmp_path_factory):
    from tests.models.test_model_cli import USER_NET

    path = tmp_path_factory.mktemp("net") / f"{NETWORK}.py"
    path.write_text(USER_NET)
    return path


@pytest.fixture(scope="module")
def previous_network_set(tmp_path_factory, network_file):
    folder = tmp_path_factory.mktemp("prev_net") / NETWORK
    result = _network(network_file, folder, 1)
    assert result.exit_code == 0, result.output
    return folder


@pytest.mark.parametrize("point", NETWORK_STAGES)
def test_sigint_during_a_network_export_leaves_the_old_set_or_the_whole_new_one(
        tmp_path, network_file, previous_network_set, point):
    """`attn-export model` runs the block pipeline's stages, so it has the same fault points."""
    folder = tmp_path / NETWORK
    shutil.copytree(previous_network_set, folder)
    before = _snapshot(folder)
    result = _network(network_file, folder, 2, env={FAULT_ENV: point})
    assert result.exit_code == 1 and "interrupted" in result.output, result.output
    assert "Traceback" not in result.output
    after = _snapshot(folder)
    if point.startswith(("commit:", "committed")):
        assert after != before
    else:
        assert after == before, f"interrupted at {point}, the folder changed"
    report = _assert_consistent(folder, NETWORK)
    assert report["network"]["name"].endswith(f"{NETWORK}.py:build")


def test_sigint_on_a_first_export_leaves_no_folder(tmp_path):
    folder = tmp_path / "fresh"
    result = _run("se", "--output-dir", str(folder), env={FAULT_ENV: "staged:report.json"})
    assert result.exit_code == 1 and "interrupted" in result.output
    assert not folder.exists()


def test_precision_graph_and_report_land_together(tmp_path, previous_set):
    folder = tmp_path / "se"
    shutil.copytree(previous_set, folder)
    before = _snapshot(folder)
    result = _run("se", "--channels", "16", "--seed", "1", "--output-dir", str(folder),
                  "--precision", "fp16", env={FAULT_ENV: "staged:se.fp16.onnx"})
    assert result.exit_code == 1 and "interrupted" in result.output
    after = _snapshot(folder)  # the export landed (byte-identical graph); the fp16 set did not
    assert set(after) == set(before) and after["se.onnx"] == before["se.onnx"]
    assert "fp16" not in json.loads((folder / "report.json").read_text())
    _assert_consistent(folder)
    result = _run("se", "--channels", "16", "--seed", "1", "--output-dir", str(folder),
                  "--precision", "fp16")
    assert result.exit_code == 0, result.output
    report = _assert_consistent(folder)
    assert report["fp16"]["passed"] and "se.fp16.onnx" in report["sha256"]


def test_read_only_target_is_one_line_and_untouched(tmp_path, previous_set):
    sums = tmp_path / "before.sha256"
    script = (f"cp -a {previous_set} $M/se && sha256sum $M/se/* > {sums} && "
              f"mount -o remount,ro $M && {_cli('se', '--output-dir', '$M/se')}; echo rc=$?; "
              f"sha256sum $M/se/* | cmp -s - {sums} && echo unchanged")
    proc = _in_private_tmpfs(tmp_path, "8m", script)
    assert proc.stdout.split() == ["rc=1", "unchanged"], proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "read-only filesystem" in proc.stderr


def _cli(*args):
    quoted = " ".join(f'"{a}"' for a in args)
    return f"{sys.executable} -c 'from attn_export.cli import main; main()' {quoted}"


def _in_private_tmpfs(tmp_path, size, script):
    """Run ``script`` in a private mount namespace with a size-limited tmpfs at $M: another
    filesystem than the one holding the system's temporary folder (the cross-device case)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    mount = tmp_path / "mnt"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mount}"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"a private mount namespace with a tmpfs is not permitted here: "
                    f"{probe.stderr.strip() or probe.returncode}")
    full = f"set -e; M={mount}; mount -t tmpfs -o size={size} tmpfs $M; set +e; {script}"
    return subprocess.run(["unshare", "-m", "sh", "-c", full], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))


def test_cross_device_target_exports_and_validates(tmp_path):
    script = textwrap.dedent(f"""
        {_cli('se', '--channels', '16', '--precision', 'fp16', '--output-dir', '$M/se')} >/dev/null
        echo export=$?
        {_cli('validate', '$M/se/se.onnx', '--golden', '$M/se/se.golden.npz')} >/dev/null
        echo validate=$?
        ls -A $M/se
        findmnt -n -o FSTYPE --target $M
    """)
    proc = _in_private_tmpfs(tmp_path, "64m", script)
    assert "export=0" in proc.stdout and "validate=0" in proc.stdout, proc.stderr
    assert proc.stdout.split()[2:7] == ["report.json", "se.fp16.onnx", "se.golden.npz",
                                        "se.onnx", "tmpfs"]


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    script = (f"{_cli('se', '--output-dir', '$M/se')}; echo rc=$?; ls -A $M; "
              f"mkdir -p $M/old && echo keep > $M/old/report.json && "
              f"{_cli('se', '--output-dir', '$M/old')}; echo rc=$?; cat $M/old/report.json; "
              "ls -A $M/old")
    proc = _in_private_tmpfs(tmp_path, "300k", script)  # the 64-channel golden file is ~770 kB
    errors = [line for line in proc.stderr.splitlines() if line]
    assert len(errors) == 2 and all("no space left on the device" in e for e in errors), errors
    assert proc.stdout.split() == ["rc=1", "old", "rc=1", "keep", "report.json"] or \
        proc.stdout.split() == ["rc=1", "rc=1", "keep", "report.json"]


def test_two_concurrent_exports_serialize_and_leave_one_consistent_set(tmp_path):
    folder = tmp_path / "se"
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([*CLI, "se", "--channels", "16", "--seed", str(seed),
                               "--output-dir", str(folder)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (3, 4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    report = _assert_consistent(folder)  # one run's whole set, whichever committed last
    assert report["seed"] in (3, 4)
