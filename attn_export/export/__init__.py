"""Pipeline stages, each a plain ``<target>_from_<source>`` function (Polygraphy's naming rule).

Nothing is imported here: torch, onnx and tensorrt load inside the stage that needs them.
"""
