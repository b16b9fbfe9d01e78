"""launch.benchmark at tiny sizes: every mode runs and its numbers are consistent with each
other and with the model's own FLOP count (speed itself is for the launch, not tests)."""
import json
import os
import subprocess
import sys

import pytest

from alexnet_jax.base import environment
from alexnet_jax.programs import summary
import helpers
import processes

pytestmark = pytest.mark.slow   # one launch.benchmark process does every mode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def results(tmp_path_factory, shapes_dir):
  out = tmp_path_factory.mktemp("bench") / "bench.json"
  env = processes.child_env()
  env.pop("GLIBC_TUNABLES", None)   # for the launcher to add
  proc = subprocess.run(
      [sys.executable, "-m", "launch.benchmark", "--config=experiments/quickstart.py",
       "--config.model.features=(16,32,48,48,32)", "--config.model.fc_features=(64,64)",
       "--config.batch_size=16", f"--data_dir={shapes_dir}", "--what=train,loop,input,gemm,lrn",
       "--warmup=1", "--repeats=2", "--lrn_batch=2", "--gemm_n=1024", "--workers=0",
       f"--json={out}"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "loop_over_step" in proc.stdout
  return json.loads(out.read_text())


@pytest.mark.skipif(environment.glibc_version() < (2, 35), reason="needs glibc 2.35+")
def test_the_launcher_reran_itself_with_huge_pages(results):
  # launch/__init__.py re-executed `python -m launch.benchmark ...`: its arguments survived
  # (the JSON is where --json said) and its environment gained the tunable.
  assert results["glibc_tunables"] == "glibc.malloc.hugetlb=1"


def test_step_rates_are_the_batch_over_the_time(results):
  assert results["train_images_per_s"] == pytest.approx(16 / results["train_step_s"])
  assert results["train_step_min_s"] <= results["train_step_s"] <= results["train_step_max_s"]
  assert results["eval_images_per_s"] > 0 and results["lrn_fwd_bwd_s"] > 0


def test_loop_reports_itself_against_the_step_on_uint8_batches(results):
  assert results["batch_dtype"] == "uint8"   # what crosses to the device
  assert results["loop_over_step"] == pytest.approx(
      results["loop_images_per_s"] / results["step_images_per_s"])
  assert results["input_images_per_s"] == results["input_images_per_s_per_worker"]   # 0: one


def test_roofline_uses_xlas_flops_which_match_the_models_table(results):
  """A training step costs 2-3x the forward pass: forward, then per layer the weight
  gradient and (except for conv1, whose input needs none) the input gradient, each the size
  of the forward matmul. XLA's count of the compiled step must fall in that range."""
  cfg = helpers.tiny_config()
  forward = sum(r.flops for r in summary.layer_table(cfg.model, 64)) / 1e9
  assert 2.0 * forward < results["train_gflop_per_image"] < 3.2 * forward
  assert results["roofline_images_per_s"] == pytest.approx(
      results["gemm_gflop_per_s"] / results["train_gflop_per_image"])
  assert results["gemm_gflop_per_s"] >= results["gemm_median_gflop_per_s"] > 0   # the best
  assert results["gemm_n"] == 1024   # --gemm_n
  assert results["train_over_roofline"] == pytest.approx(
      results["train_images_per_s"] / results["roofline_images_per_s"])
