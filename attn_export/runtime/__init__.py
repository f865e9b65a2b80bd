"""Backends and comparison. Each backend imports its framework lazily, so this package runs alone
on a Jetson with just onnxruntime or TensorRT.

This file imports nothing: ``doctor`` imports ``runtime.jetson`` to read the L4T release and must
still answer when numpy itself is missing, one of the things it is asked to diagnose. Import the
modules themselves (``runtime.base``, ``runtime.compare``, ...).
"""
