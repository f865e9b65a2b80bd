"""The ``attn-export`` command: the group that registers the verbs living in ``commands/``.

Each verb is one module, ``attn_export/commands/<verb>.py``, holding a thin click command that
parses, calls the library and prints. Library errors (``AttnExportError``) print one line and exit
1; bad flags exit 2 (click's own). The verb modules import only click, ``commands.common`` and the
registry at import time, so ``attn-export --help`` works without torch.
"""

from __future__ import annotations

import click

from attn_export.commands.bench import bench_command
from attn_export.commands.bench_serve import bench_serve_command
from attn_export.commands.build import build_command
from attn_export.commands.convert import convert_command
from attn_export.commands.doctor import doctor_command
from attn_export.commands.export import export_command
from attn_export.commands.lint import lint_command
from attn_export.commands.list import list_command
from attn_export.commands.model import model_command
from attn_export.commands.repo import repo_command
from attn_export.commands.report import report_command
from attn_export.commands.scan import scan_command
from attn_export.commands.serve import health_command, serve_command
from attn_export.commands.validate import validate_command
from attn_export.modules.registry import list_blocks


class BlockGroup(click.Group):
    """``attn-export cbam ...`` runs ``attn-export export cbam ...``: the block is the command."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["export", *args]
        return super().resolve_command(ctx, args)

    def format_epilog(self, ctx, formatter):
        formatter.write_paragraph()
        formatter.write_text("Blocks: " + ", ".join(list_blocks()))
        formatter.write_paragraph()
        formatter.write_text("Example: attn-export cbam --opset 17 --dynamic all")


@click.group(cls=BlockGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="attn-export")
def main() -> None:
    """Export attention blocks to ONNX (and TensorRT), validated against PyTorch.

    Run `attn-export BLOCK [options]` to export one block, e.g. `attn-export cbam --opset 17`.
    """
    from attn_export.termination import install_sigterm_handler

    install_sigterm_handler()  # docker stop: SIGTERM ends a command like Ctrl-C, also as PID 1


for _command in (export_command, list_command, validate_command, build_command, lint_command,
                 convert_command, repo_command, serve_command, bench_serve_command, bench_command,
                 model_command, doctor_command, report_command, health_command, scan_command):
    main.add_command(_command)


if __name__ == "__main__":  # python -m attn_export.cli
    main()
