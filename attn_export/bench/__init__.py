"""Speed, measured: deploy graphs against their naive export and a one-pass floor.

``graphs`` builds what is timed (the floor: a single ``Mul`` over the input; the naive and deploy
exports of a block), ``timing`` runs them interleaved round by round on ONNX Runtime, ``stats`` turns
the samples into percentiles and per-round ratios, ``profile`` gives ONNX Runtime's op-by-op
breakdown, ``tensorrt_timing`` times an engine with CUDA events, ``report`` prints the tables.
Every figure is a ratio measured in the same run, so a loaded machine moves numerator and
denominator together; the spread of the per-round ratios is reported as the run's noise.
"""
