"""Building TensorRT engines, one job per file, in Polygraphy's loader style.

- :mod:`.settings`: what the user asked (:class:`BuildOptions`) and the TensorRT calls it means
  (:class:`BuilderSettings`), decided without TensorRT;
- :mod:`.timing_cache`: where the cache lives, loading, merging and saving it;
- :mod:`.parse`: ONNX -> network, parser errors that name the node;
- :mod:`.build`: the builder config and the build itself;
- :mod:`.sidecar`: the ``.engine.json`` written beside each engine;
- :mod:`.graph`: which ONNX file the precision plan parses, and the engine's path.

The stage that runs them in order is :func:`attn_export.export.engine_from_onnx.engine_from_onnx`
(and :func:`~attn_export.export.engine_from_onnx.build_engine` for ``attn-export build``).
Runtime code imports nothing from here: opening and checking engines is
:mod:`attn_export.runtime`'s job.
"""

from attn_export.export.trt_build.settings import (
    DEFAULT_WORKSPACE_MIB,
    PINNED_LAYER_TYPES,
    BuilderSettings,
    BuildOptions,
    builder_settings,
    layers_to_pin,
)

__all__ = ["DEFAULT_WORKSPACE_MIB", "PINNED_LAYER_TYPES", "BuildOptions", "BuilderSettings",
           "builder_settings", "layers_to_pin"]
