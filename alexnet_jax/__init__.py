"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) in JAX and Flax."""
import os

# XLA:CPU's default convolution path in jax 0.10 is 3-4x slower than PyTorch's; this flag
# restores the fast one (README, Performance). Set here, before any backend starts, so that
# nobody has to remember it; it only affects the CPU backend and leaves numerics unchanged
# (tests/test_xla_flags.py).
_CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
if "xla_cpu_experimental_ynn_fusion_type" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_CPU_CONV_FLAG}".strip()

# TensorFlow (launch.prepare's tfds sources; never the training path) prints C++ INFO
# notices on import; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# etils.epath (gs:// workdirs and datasets) goes through TensorFlow's gfile whenever
# TensorFlow is installed, unless told otherwise: gcsfs instead, so that training never
# imports TensorFlow (a run may still choose gfile with EPATH_USE_TF=1).
os.environ.setdefault("EPATH_USE_TF", "0")
