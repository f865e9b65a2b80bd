"""``attn-export model my_net.py:build``: a user's own network, built from their file.

Any failure to import the file or to call the function becomes one line naming the file and the
error (a user error, not our traceback).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from attn_export.errors import AttnExportError


class UserModelError(AttnExportError, ValueError):
    """A user's network file that does not import, or a function that does not build."""


def is_user_spec(spec: str) -> bool:
    """``FILE.py:FUNCTION`` (or ``FILE.py``, meaning its ``build``) rather than a registry name."""
    return ".py" in spec or "/" in spec


def parse_user_spec(spec: str) -> tuple[Path, str]:
    file, _, func = spec.rpartition(":") if ":" in spec else (spec, "", "build")
    path = Path(file)
    if not func.isidentifier():
        raise UserModelError(f"{spec}: expected FILE.py:FUNCTION (a Python function name after "
                             "the colon), e.g. my_net.py:build")
    if not path.is_file():
        raise UserModelError(f"{path}: no such file (expected FILE.py:FUNCTION)")
    return path, func


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def load_user_function(path: Path, func: str):
    """Import ``path`` as a module of its own and return its ``func``."""
    name = f"attn_export_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file may raise anything on import
        sys.modules.pop(name, None)
        raise UserModelError(f"{path}: cannot import it ({_first_line(exc)})") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        found = [n for n, v in vars(module).items() if inspect.isfunction(v)
                 and v.__module__ == name]
        raise UserModelError(f"{path}: no function {func!r} (functions found: "
                             f"{', '.join(found) or 'none'})")
    return fn


def build_user_model(spec: str, **kwargs: Any):
    """Call the user's builder with ``kwargs``; it must return an ``nn.Module``."""
    from torch import nn

    path, func = parse_user_spec(spec)
    fn = load_user_function(path, func)
    try:
        model = fn(**kwargs)
    except Exception as exc:  # anything the user's code raises
        raise UserModelError(f"{path}:{func}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
                             f" failed: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UserModelError(f"{path}:{func} returned a {type(model).__name__}, not a torch "
                             "nn.Module")
    return model
