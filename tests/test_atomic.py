"""ArtefactSet: a set of files lands whole or not at all, whatever interrupts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from attn_export.atomic import (
    FAULT_ENV,
    JOURNAL_NAME,
    LOCK_NAME,
    STAGING_PREFIX,
    ArtefactSet,
    OutputError,
    folder_lock,
    recover,
    staging_folders,
)

ROOT = str(Path(__file__).resolve().parents[1])  # the checkout under test, for the subprocesses


def _old_set(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("old a")
    (folder / "b.txt").write_text("old b")
    (folder / "stale.txt").write_text("stale")


def _contents(folder):
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_committed_set_replaces_the_previous_one_and_removes_stale_files(tmp_path):
    _old_set(tmp_path)
    with ArtefactSet(tmp_path, remove=["stale.txt"]) as txn:
        staged = txn.write_text("a.txt", "new a")
        assert staged.read_text() == "new a" and staged.parent != tmp_path  # validated in staging
        assert (tmp_path / "a.txt").read_text() == "old a"  # nothing moved yet
        txn.write("b.txt", lambda p: p.write_text("new b"))
    assert _contents(tmp_path) == {"a.txt": "new a", "b.txt": "new b"}  # no lock, no staging left


def test_an_exception_leaves_the_previous_set_untouched(tmp_path):
    _old_set(tmp_path)
    with pytest.raises(ValueError), ArtefactSet(tmp_path, remove=["stale.txt"]) as txn:
        txn.write_text("a.txt", "new a")
        raise ValueError("validation failed")
    assert _contents(tmp_path) == {"a.txt": "old a", "b.txt": "old b", "stale.txt": "stale"}


def test_a_failed_first_set_leaves_no_folder(tmp_path):
    target = tmp_path / "new" / "out"
    with pytest.raises(KeyboardInterrupt), ArtefactSet(target) as txn:
        txn.write_text("a.txt", "x")
        raise KeyboardInterrupt
    assert not target.exists()


_CHILD = textwrap.dedent("""
    import sys
    from attn_export.atomic import ArtefactSet
    try:
        with ArtefactSet(sys.argv[1], remove=["stale.txt"]) as txn:
            txn.write_text("a.txt", "new a")
            txn.write_text("b.txt", "new b")
    except KeyboardInterrupt:
        print("interrupted")
""")


@pytest.mark.parametrize("point,expect_new", [
    ("staged:a.txt", False), ("staged:b.txt", False),
    ("commit:journal", True), ("commit:first-move", True),  # deferred through the commit
])
def test_a_real_sigint_at_each_step_leaves_one_complete_set(tmp_path, point, expect_new):
    _old_set(tmp_path)
    env = dict(os.environ, **{FAULT_ENV: point}, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert "interrupted" in proc.stdout, proc.stderr  # the signal really arrived
    want = {"a.txt": "new a", "b.txt": "new b"} if expect_new else \
        {"a.txt": "old a", "b.txt": "old b", "stale.txt": "stale"}
    assert _contents(tmp_path) == want


def test_a_killed_commit_is_rolled_forward_by_the_next_writer(tmp_path):
    """What SIGKILL between two renames leaves (journal written, one file moved) is finished."""
    _old_set(tmp_path)
    staging = tmp_path / f"{STAGING_PREFIX}killed"
    staging.mkdir()
    (tmp_path / "a.txt").write_text("new a")  # the first rename happened
    (staging / "b.txt").write_text("new b")
    (staging / JOURNAL_NAME).write_text(json.dumps({"moves": ["a.txt", "b.txt"],
                                                    "remove": ["stale.txt"]}))
    undecided = tmp_path / f"{STAGING_PREFIX}undecided"
    undecided.mkdir()
    (undecided / "a.txt").write_text("never committed")
    assert recover(tmp_path) == [staging.name, undecided.name]
    assert _contents(tmp_path) == {"a.txt": "new a", "b.txt": "new b"}
    assert staging_folders(tmp_path) == []


def test_names_must_be_plain(tmp_path):
    with pytest.raises(ValueError), ArtefactSet(tmp_path) as txn:
        txn.write_text("../escape.txt", "x")
    assert not (tmp_path.parent / "escape.txt").exists()


_HOLDER = textwrap.dedent("""
    import sys, time
    from attn_export.atomic import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_a_second_writer_waits_for_the_lock_and_says_so(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path), "1.5"],
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        assert holder.stdout.readline().strip() == "locked"
        messages = []
        start = time.monotonic()
        with folder_lock(tmp_path, on_wait=messages.append):
            waited = time.monotonic() - start
        assert waited > 0.5, "the lock did not exclude the second writer"
        assert len(messages) == 1 and "waiting for attn-export pid" in messages[0]
    finally:
        holder.wait(timeout=30)
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with folder_lock(tmp_path), ArtefactSet(tmp_path) as txn:  # would deadlock if not
        txn.write_text("a.txt", "x")
    assert _contents(tmp_path) == {"a.txt": "x"}


def test_an_unwritable_folder_is_one_line(tmp_path):
    with pytest.raises(OutputError, match="cannot create output folder"):
        with ArtefactSet("/proc/attn-export-no/such"):
            pass
