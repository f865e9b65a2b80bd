"""Lint verdicts checked against what TensorRT's own parser documentation states, not against our
support table (attn_export/export/trt_support.json): each case is a crafted graph whose outcome a
primary source states, quoted here with where it was read.

Sources (the ONNX-TensorRT parser's operator matrix, read from the onnx/onnx-tensorrt repository):

- ``8.5``: docs/operators.md on branch 8.5-GA (commit fdeeaca87ad2), "TensorRT 8.5 supports
  operators up to Opset 17"; data types "DOUBLE, FLOAT32, FLOAT16, INT8, and BOOL".
- ``10.x``: docs/operators.md on main after 10.1-GA (commit 7ecb49a435bd), "TensorRT 10.0 supports
  operators in the inclusive range of opset 9 to opset 20"; data types include BFLOAT16 and INT64.
  The 10.3 document itself is not in hand: a construct this 10.0 document accepts is asserted to
  pass on lint version 10.3 only where 8.5 rejected it (a restriction lifted in 10.0 stays lifted
  within 10.x), and one both documents reject is asserted to fail on 10.3.

Two constructs are deliberately left out because our table and the 10.0 document disagree and no
10.3 document was at hand to settle it: Einsum with an ellipsis (the 10.0 row has no restriction,
our 10.3 table rejects it) and Slice with runtime ``axes`` (the 10.0 row still says "`axes` must
be an initializer", our 10.3 table accepts it).
"""

from __future__ import annotations

import pytest
from onnx import helper as oh

from attn_export.export.lint import lint_onnx
from tests.export import test_lint as crafted

S85 = "onnx-tensorrt 8.5-GA docs/operators.md"
S10 = "onnx-tensorrt main (10.0/10.1) docs/operators.md"


def _unique():
    node = oh.make_node("Unique", ["x"], ["u"], name="unique")
    return crafted._model([node], [crafted._vi("x", shape=(8,))], [crafted._vi("u", shape=None)])


# (graph, lint version, the parser accepts it?, the source's words)
CITED = [
    (lambda: crafted._relu(17), "8.5", True, f"{S85}: 'supports operators up to Opset 17'"),
    (lambda: crafted._relu(18), "8.5", False, f"{S85}: 'supports operators up to Opset 17'"),
    (lambda: crafted._relu(20), "10.3", True, f"{S10}: 'inclusive range of opset 9 to opset 20'"),
    (crafted._layernorm, "8.5", False, f"{S85}: '| LayerNormalization | N |'"),
    (crafted._layernorm, "10.3", True, f"{S10}: '| LayerNormalization | Y | FP32, FP16, BF16'"),
    (_unique, "8.5", False, f"{S85}: '| Unique | N |'"),
    (_unique, "10.3", False, f"{S10}: '| Unique | N |'"),
    (crafted._stft, "8.5", False, f"{S85}: '| STFT | N |'"),
    (crafted._stft, "10.3", False, f"{S10}: '| STFT | N |'"),
    (crafted._maxpool_indices, "8.5", False, f"{S85}: MaxPool '`Indices` output tensor unsupported'"),
    (crafted._maxpool_indices, "10.3", False,
     f"{S10}: MaxPool '`Indices` output tensor unsupported'"),
    (crafted._resize_cubic, "8.5", False, f"{S85}: Resize 'Supported resize modes: nearest, linear'"),
    (crafted._resize_cubic, "10.3", False,
     f"{S10}: Resize 'Supported resize modes: nearest, linear'"),
    (crafted._topk_runtime_k, "8.5", False, f"{S85}: TopK '`K` input must be an initializer'"),
    (crafted._topk_runtime_k, "10.3", True, f"{S10}: TopK row without that restriction"),
    (crafted._reverse_sequence_dynamic, "8.5", False,
     f"{S85}: ReverseSequence 'Dynamic input shapes are unsupported'"),
    (crafted._reverse_sequence_dynamic, "10.3", True,
     f"{S10}: ReverseSequence row without that restriction"),
    (crafted._squeeze_folded_axes, "8.5", False, f"{S85}: Squeeze '`axes` must be an initializer'"),
    (crafted._squeeze_folded_axes, "10.3", False, f"{S10}: Squeeze '`axes` must be an initializer'"),
    (crafted._pad_runtime_axes, "10.3", False, f"{S10}: Pad '`axes` must be an initializer'"),
    (crafted._integer_pow, "8.5", False, f"{S85}: '| Pow | Y | FP32, FP16 |' (no INT32)"),
    (crafted._integer_pow, "10.3", False, f"{S10}: '| Pow | Y | FP32, FP16, BF16 |' (no INT32)"),
    (crafted._bf16_cast, "8.5", False,
     f"{S85}: data types 'DOUBLE, FLOAT32, FLOAT16, INT8, and BOOL' (no BFLOAT16)"),
    (crafted._bf16_cast, "10.3", True, f"{S10}: data types include BFLOAT16"),
    (lambda: crafted._qdq(zp=3), "8.5", False,
     f"{S85}: QuantizeLinear '`y_zero_point` must be 0', DequantizeLinear '`x_zero_point` must be "
     "zero'"),
    (lambda: crafted._qdq(zp=3), "10.3", False, f"{S10}: the same two rows"),
]


@pytest.mark.parametrize("build,version,accepted,source", CITED,
                         ids=[f"{c[1]}-{c[3][:60]}" for c in CITED])
def test_lint_agrees_with_the_parser_documentation(build, version, accepted, source):
    report = lint_onnx(build(), version)
    assert report.passed is accepted, f"{source}; lint said:\n{report.table()}"

