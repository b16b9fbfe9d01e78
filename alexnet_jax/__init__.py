"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) in JAX and Flax.

The library is five packages in layers; a module imports from its own package or from
those before it in LAYERS, never after (tests/test_layers.py):
  base      paths and URLs, files written atomically, the prepared-record format, event
            logs, messages, the process environment: no JAX
  nn        the net (§3): AlexNet's layers, LRN, pooling, their CPU forms, weight layouts
  run       devices and processes (the towers' mesh, §3.2), checkpoints and run.json
  data      the input (§2, §4.1): ImageNet's files, preparing, loading, augmenting
  programs  what launch/ runs: training (§5), evaluation, inference, features, imports,
            sweeps, figures
"""
import os

from alexnet_jax.base import environment

LAYERS = ("base", "nn", "run", "data", "programs")

# Before any JAX backend starts, for the library's users as for the launchers (why, and
# the launchers' other change: environment.py).
environment.set_cpu_conv_flag()

# TensorFlow (launch.prepare's tfds sources; never the training path) prints C++ INFO
# notices on import; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# etils.epath (gs:// workdirs and datasets) goes through TensorFlow's gfile whenever
# TensorFlow is installed, unless told otherwise: gcsfs instead, so that training never
# imports TensorFlow (a run may still choose gfile with EPATH_USE_TF=1).
os.environ.setdefault("EPATH_USE_TF", "0")
