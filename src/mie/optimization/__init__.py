"""Model optimization: quantization (:mod:`.quantize`, :mod:`.int_linear`, :mod:`.static_int8`, :mod:`.qat`),
pruning (:mod:`.prune`, :mod:`.wanda`, :mod:`.structured`), inference precision (:mod:`.precision`),
benchmarks and profiles (:mod:`.benchmark`, :mod:`.profile`); :mod:`.scheme` re-applies an optimization
recorded in a checkpoint.

The ``mie optimize`` command (``mie.cli.optimize``) drives them on runs and pretrained models.
"""
