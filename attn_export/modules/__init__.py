"""Attention blocks, reference and deploy forms, and the registry that names them."""

from attn_export.modules.registry import BLOCKS, block_class, block_info, list_blocks

__all__ = ["BLOCKS", "block_class", "block_info", "create_block", "list_blocks", "to_deploy"]


def __getattr__(name: str):
    # create_block/to_deploy import torch: keep `import attn_export.modules` torch-free.
    if name == "create_block":
        from attn_export.modules.factory import create_block

        return create_block
    if name == "to_deploy":
        from attn_export.modules.swap import to_deploy

        return to_deploy
    raise AttributeError(name)
