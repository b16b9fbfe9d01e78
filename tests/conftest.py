"""Eight CPU devices for the mesh tests, set before jax starts its backend (child processes
get one unless they ask: processes.child_env); a compilation cache shared by the tests
(many compile the same tiny model); a faster-compiling PRNG and LLVM level; one OpenMP
thread per test process."""
import gc
import os
import tempfile

# LLVM at -O1 compiles the tests' many small programs (initialisers most of all) about twice
# as fast as the default -O2, and runs them as fast: the suite is mostly compilation.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_backend_optimization_level=1").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "alexnet_jax_test_jit_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# One OpenMP thread per process: xdist runs one worker per core, and an OpenMP team (oneDNN's
# bf16 kernels, alexnet_jax/nn/onednn.py; torch's) stalls at each barrier whose other thread
# another process has descheduled (benchmarks/README.md, "Sharing the cores").
os.environ.setdefault("OMP_NUM_THREADS", "1")
# XLA:CPU takes about 1 s to compile each threefry initialiser; rbg keys compile ~3x faster.
# Tests compare runs with each other, never with fixed random numbers, so either will do.
os.environ.setdefault("JAX_DEFAULT_PRNG_IMPL", "rbg")


import pytest  # noqa: E402  (after the environment above)


def pytest_configure(config):
  """In each process that runs tests (not pytest-xdist's controller, which only hands them
  out): torch first, then jax's eight devices."""
  if getattr(config.option, "dist", "no") != "no" and not os.environ.get("PYTEST_XDIST_WORKER"):
    return
  # torchvision (the oracle of the pretrained-weight tests; it loads triton) crashes when
  # imported after TensorFlow (the oracle of others) in one process; imported first, both
  # work.
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import torchvision  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    pass
  # The eight devices are this process's, not the environment's: a child process (a
  # launcher, a job's process) that inherits the environment runs on one CPU device, as a
  # user's would, and compiles what the other children compiled (the cache's key holds the
  # device count).
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_num_cpu_devices", 8)


def pytest_unconfigure(config):
  """Freezes the test process's objects (jax's, torch's, TensorFlow's: millions) before it
  exits, so that the interpreter's last garbage collections skip them rather than walk
  them all (nothing the tests wrote is open by then; benchmarks/README.md, "A launcher's
  exit")."""
  gc.freeze()


# The modules that take over about a second (cold runs of the full suite and the quick loop
# on a 2-core machine, longest first) are handed to the workers first, so that the shortest
# fill the end and the workers finish together (pytest.ini: each module goes whole to one
# worker, in collection order, and a worker holds the next module while it runs one).
# A module missing from the list only runs later; nothing else depends on it.
LONGEST_FIRST = ("test_recipes", "test_multiprocess", "test_readme", "test_inference", "test_gcs",
                 "test_train", "test_pretrained", "test_sharding", "test_run_info",
                 "test_faults_training", "test_cuda_convnet", "test_checkpoint_faults",
                 "test_finetune", "test_summary", "test_sweep", "test_onednn", "test_models",
                 "test_faults_inputs", "test_loader", "test_cpu_forms", "test_faults_outputs",
                 "test_colour", "test_augment", "test_lrn", "test_faults_data", "test_pooling",
                 "test_prepare", "test_benchmark", "test_xla_flags", "test_visualize",
                 "test_features", "test_evaluation", "test_plateau", "test_events",
                 "test_imagenet_prepare")


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.stem
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
  items.sort(key=rank)   # stable: each module's tests keep their order


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
  """The quick start's generated shapes (4 classes, 200 train and 50 test images each) as
  one prepared dataset of 72x72 squares for the whole session."""
  import helpers  # pylint: disable=import-outside-toplevel
  return helpers.shapes(str(tmp_path_factory.mktemp("data") / "shapes"))


@pytest.fixture
def threefry():
  """The production PRNG, threefry, for one test (the suite's default is rbg, which compiles
  faster)."""
  import jax  # pylint: disable=import-outside-toplevel
  before = jax.config.jax_default_prng_impl
  jax.config.update("jax_default_prng_impl", "threefry2x32")
  yield
  jax.config.update("jax_default_prng_impl", before)


@pytest.fixture
def read_only():
  """chmod 555 on folders for one test (restored after); under `helpers.permissions_apply`
  a child process, root included, cannot write there."""
  changed = []

  def make(path):
    os.chmod(path, 0o555)
    changed.append(path)
    return path

  yield make
  for path in changed:
    os.chmod(path, 0o755)
