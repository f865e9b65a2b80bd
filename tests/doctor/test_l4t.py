"""Reading /etc/nv_tegra_release: the lines real Jetsons write, and what each release ships."""

from __future__ import annotations

import pytest

from attn_export.doctor.l4t import L4TRelease, parse_tegra_release, read_l4t_release, tensorrt_matches

# First lines as JetPack writes them (r36.4.3 = JetPack 6.2, r35.4.1 = JetPack 5.1.2).
JP62 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n"
JP512 = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1\n"


@pytest.mark.parametrize("text, version, jetpack, trt", [
    (JP62, "36.4.3", "6.1/6.2", "10.3"),
    (JP512, "35.4.1", "5.1.2", "8.5"),
    ("# R36 (release), REVISION: 3, GCID: 1\n", "36.3.0", "6.0", "8.6"),
    ("# R38 (release), REVISION: 2.0, GCID: 1\n", "38.2.0", "7.0", "10.13"),
    ("# R39 (release), REVISION: 2.1, GCID: 1\n", "39.2.1", "7.2", "10.16"),
    ("# R40 (release), REVISION: 1.0, GCID: 1\n", "40.1.0", None, None),
], ids=["jp6.2", "jp5.1.2", "no-patch", "jp7.0", "jp7.2", "unknown-release"])
def test_parse_tegra_release(text, version, jetpack, trt):
    release = parse_tegra_release(text)
    assert (release.version, release.jetpack, release.tensorrt) == (version, jetpack, trt)


@pytest.mark.parametrize("text, cuda", [(JP62, "12.6"), ("# R39 (release), REVISION: 2.0\n", "13.2"),
                                        ("# R38 (release), REVISION: 4.0\n", "13.0")])
def test_each_release_names_its_cuda(text, cuda):
    assert parse_tegra_release(text).cuda == cuda


def test_garbage_is_not_a_release():
    assert parse_tegra_release("Ubuntu 22.04\n") is None


def test_tensorrt_matches_major_minor_only():
    release = L4TRelease(36, 4, 3)
    assert tensorrt_matches("10.3.0.30", release) is True
    assert tensorrt_matches("10.13.0.35", release) is False
    assert tensorrt_matches("10.16.1", L4TRelease(39, 2, 0)) is True
    assert tensorrt_matches("10.3.0", L4TRelease(40, 1, 0)) is None


def test_release_file_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "nv_tegra_release"
    monkeypatch.setenv("ATTN_EXPORT_TEGRA_RELEASE", str(path))
    assert read_l4t_release() == (path, None, False)
    path.write_text(JP62)
    assert read_l4t_release() == (path, L4TRelease(36, 4, 3), True)
