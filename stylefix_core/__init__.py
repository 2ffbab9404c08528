"""StyleFix core: models, the model bundle, scoring, correction, training and I/O.

Nothing in this package imports Apache Beam; the Beam job in ``pipelines/`` is a
thin layer over it. Pixel convention everywhere: RGB, float32 in [0, 1], NCHW
for tensors and HxWx3 uint8 for decoded numpy images.
"""

__version__ = "0.1.0"
