"""Per-role verdicts: what blocks a role, and alternatives (cuda-python or a CUDA torch)."""

from __future__ import annotations

from attn_export.doctor import Check, format_table, judge

BASE = [Check("python", "Python", "ok", "3.10.12"), Check("numpy", "numpy", "ok", "1.26.4"),
        Check("onnx", "onnx", "ok", "1.23.2"), Check("onnxruntime", "onnxruntime", "ok", "1.23.2"),
        Check("serve_stack", "serve stack", "ok", "starlette 1.10.0")]
GPU = [Check("tensorrt", "TensorRT", "ok", "10.3.0.30"), Check("cuda_driver", "CUDA driver", "ok", "12.6"),
       Check("gpu", "GPU", "ok", "0: Orin (sm 8.7)"),
       Check("tensorrt_extra", "TensorRT extra", "ok", "L4T r36.4.3 -> cuda-python 12")]


def test_build_needs_cuda_python_or_a_cuda_torch():
    no_memory = [Check("cuda_python", "cuda-python", "missing", "not installed", "pip install cuda-python"),
                 Check("torch_cuda", "torch CUDA", "missing", "CPU build", "a CUDA torch")]
    verdict = judge("build", BASE + GPU + no_memory)
    assert not verdict.ready
    assert [r.label for r in verdict.blocking] == ["cuda-python or torch CUDA"]
    assert "pip install cuda-python | a CUDA torch" == verdict.blocking[0].fix
    with_cuda_python = [Check("cuda_python", "cuda-python", "ok", "12.9.0"), no_memory[1]]
    assert judge("build", BASE + GPU + with_cuda_python).ready


def test_a_mismatched_tensorrt_blocks_build_but_a_warning_does_not():
    rows = [*BASE, *GPU[1:], Check("cuda_python", "cuda-python", "warn", "13.0", "match the driver"),
            Check("tensorrt", "TensorRT", "bad", "10.13 but L4T 36.4.3 ships 10.3", "use JetPack's")]
    verdict = judge("build", rows)
    assert [r.key for r in verdict.blocking] == ["tensorrt"]
    text = format_table(rows, [verdict])
    assert "build: NOT ready (needs TensorRT)" in text
    assert "  fix: use JetPack's" in text and "warning: cuda-python: match the driver" in text


def test_serve_does_not_need_torch_or_a_gpu():
    assert judge("serve", BASE).ready
    assert not judge("export", BASE).ready


def test_cuda_majors_that_disagree_block_build():
    rows = [*BASE, *GPU[:-1], Check("cuda_python", "cuda-python", "ok", "13.2.0"),
            Check("tensorrt_extra", "TensorRT extra", "bad", "tensorrt-cu13 needs a CUDA 13 driver",
                  "pip install 'attn-export[tensorrt-cu12]'")]
    verdict = judge("build", rows)
    assert [r.key for r in verdict.blocking] == ["tensorrt_extra"]
    assert "fix: pip install 'attn-export[tensorrt-cu12]'" in format_table(rows, [verdict])
