"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) in JAX and Flax."""
import os

from alexnet_jax import environment

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
