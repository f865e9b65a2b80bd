"""What every ``attn-export`` verb shares: one-line failures, the error wrapper, flag parsers.

Each verb lives in its own module under ``attn_export/commands/`` and imports these, so a new
verb never has to edit another verb's code.
Nothing heavy is imported here: ``attn-export --help`` must work without torch.
"""

from __future__ import annotations

import ast
import functools
import os
import sys

import click

from attn_export.errors import AttnExportError
from attn_export.termination import EXIT_STATUS as TERMINATED_STATUS
from attn_export.termination import Terminated

OPSET_HELP = "ONNX opset, 11..21 (TensorRT 8.5 parses up to 17, 10.x up to 20)."


def fail(message: str) -> None:
    """Print ``error: MESSAGE`` on stderr and exit 1: the one-line form of every user error."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


DEBUG_ENV = "ATTN_EXPORT_DEBUG"
"""Set to 1 to let internal errors (not user errors) show their traceback."""


def handle_errors(func):
    """Turn library errors into one line on stderr and exit code 1, never a traceback.

    A Ctrl-C says what it left (every multi-file write is an ``ArtefactSet``: discarded, so the
    folder holds its previous files). Any other exception is our bug, not the user's: one line
    that says so and where to report it, exit 1; ``ATTN_EXPORT_DEBUG=1`` re-raises it.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AttnExportError as exc:
            fail(str(exc))
        except Terminated:
            click.echo("error: terminated (SIGTERM); files being written were discarded, the "
                       "output folder holds what it held before (or the complete new set, if the "
                       "signal came after it landed)", err=True)
            sys.exit(TERMINATED_STATUS)
        except KeyboardInterrupt:
            fail("interrupted; files being written were discarded, the output folder holds what "
                 "it held before (or the complete new set, if the interrupt came after it landed)")
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence is on purpose
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            fail(f"internal error ({_describe(exc)}); this is a bug in attn-export, not in your "
                 "input: please report it with the command line on the attn-export issue tracker "
                 f"(set {DEBUG_ENV}=1 to see the traceback)")

    return wrapper


def _describe(exc: BaseException) -> str:
    """``TypeError: ... at file.py:123`` (innermost frame): a one-line report is still actionable."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}" if tb else ""
    return f"{type(exc).__name__}: {text}{where}"


def parse_shape(_ctx, _param, value: str | None) -> tuple[int, ...] | None:
    """``1x64x40x40`` -> (1, 64, 40, 40)."""
    if value is None:
        return None
    try:
        dims = tuple(int(d) for d in value.lower().replace(",", "x").split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise click.BadParameter(f"{value!r} is not NxCxHxW with 4 positive integers "
                                 "(e.g. 1x64x40x40)")
    return dims


def parse_sets(_ctx, _param, values: tuple[str, ...]) -> dict:
    """``--set reduction=8 --set kernel_size=[3,5]`` -> {"reduction": 8, "kernel_size": [3, 5]}."""
    kwargs = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{item!r} is not key=value (e.g. --set reduction=8)")
        try:
            kwargs[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            kwargs[key] = raw  # a bare word such as fusion=max
    return kwargs


def parse_target_trt(_ctx, _param, value: str | None) -> str | None:
    """``--trt-version 10.3`` for the precision plan; unreadable versions are bad flags (exit 2)."""
    if value is None:
        return None
    from attn_export.errors import ValidationError
    from attn_export.runtime.trt_version import TrtVersion

    try:
        version = TrtVersion.parse(value)
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None
    if version.major < 10:
        raise click.BadParameter(f"TensorRT {value} is not supported; expected 10.x or 11.x")
    return ".".join(map(str, version.triple))


def echo_warnings(caught) -> None:
    """Print warnings caught with ``warnings.catch_warnings(record=True)``, one line each."""
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
