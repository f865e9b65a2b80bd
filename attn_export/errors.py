"""Library errors: the CLI prints their message on one line and exits 1 (bad flags exit 2)."""


class AttnExportError(Exception):
    """Base of every error this package raises on purpose: expected, found, and how to fix it."""


class UnknownBlockError(AttnExportError, KeyError):
    """A block name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BlockConfigError(AttnExportError, ValueError):
    """Constructor arguments a block cannot take (channels, kernel sizes, unknown kwargs)."""


class ShapeModeError(AttnExportError, ValueError):
    """A shape mode or input shape the block or the graph cannot support."""


class ExportError(AttnExportError, RuntimeError):
    """torch -> ONNX export, check or simplification failed."""


class ModelFileError(AttnExportError, ValueError):
    """A corrupt, truncated or mismatched ONNX, golden or engine file."""


class ValidationError(AttnExportError, ValueError):
    """Inputs that do not match what a runner expects (names, dtypes, shapes)."""


class MissingDependencyError(AttnExportError, ImportError):
    """An optional dependency is needed and not installed; never auto-installed."""


class CheckpointError(AttnExportError, ValueError):
    """A state_dict that does not fit the block or the named source layout."""
