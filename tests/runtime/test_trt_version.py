"""The one TensorRT version type: what ``trt.__version__``, flags and sidecars give, read alike."""

from __future__ import annotations

import pytest

from attn_export.errors import ValidationError
from attn_export.runtime.trt_version import TrtVersion


@pytest.mark.parametrize("text, parts", [
    ("10.3", (10, 3)), ("10.3.0.30", (10, 3, 0, 30)), (" 11.4.0.106 ", (11, 4, 0, 106)),
    ("10.14.1.48.post1", (10, 14, 1, 48)), ("10.x", (10,)), ((11, 0), (11, 0)), ("10", (10,)),
])
def test_parse(text, parts):
    assert TrtVersion.parse(text).parts == parts


@pytest.mark.parametrize("text", ["", "ten", "v10.3", "10..3", "10.3 beta 2", ()])
def test_unreadable_versions_are_refused_in_words(text):
    with pytest.raises(ValidationError, match="TensorRT version"):
        TrtVersion.parse(text)


def test_same_release_and_at_least():
    v = TrtVersion.parse("10.3.0.30")
    assert v.same_release("10.3") and v.same_release("10.3.0.30") and not v.same_release("10.13")
    assert not v.same_release("10.3.0.26")
    assert v.at_least("10.3") and v.at_least("10.2.9") and not v.at_least("10.16")
    assert TrtVersion.parse("10.13") > TrtVersion.parse("10.3.0.30")
    assert (v.major, v.minor, v.patch, v.triple, v.release, str(v)) == \
        (10, 3, 0, (10, 3, 0), "10.3", "10.3.0.30")
