"""Attention blocks, reference and deploy forms, and the registry that names them."""

from attn_export.modules.registry import BLOCKS, block_class, block_info, list_blocks

__all__ = ["BLOCKS", "block_class", "block_info", "create_block", "list_blocks", "to_deploy"]


def __getattr__(name: str):
    # create_block/to_deploy import torch: keep `import attn_export.modules` torch-free.
    if name in ("create_block", "to_deploy"):
        from attn_export.modules import factory

        return getattr(factory, name)
    raise AttributeError(name)
