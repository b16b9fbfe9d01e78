"""launch.benchmark runs at tiny sizes (speed itself is measured by the launch, not tests)."""
from alexnet_jax import benchmark
from test_train import shapes_dir, tiny_config, with_data  # noqa: F401 (fixture)


def test_benchmark_functions_report_rates(shapes_dir):
  cfg = with_data(tiny_config(), shapes_dir)
  out = benchmark.train_and_eval_step(cfg, warmup=1, repeats=2)
  assert out["train_images_per_s"] > 0 and out["eval_images_per_s"] > 0
  assert out["train_step_min_s"] <= out["train_step_s"] <= out["train_step_max_s"]
  assert out["compile_train_step_s"] > 0
  assert benchmark.lrn_forward_backward((2, 9, 9, 16), warmup=1, repeats=2)["lrn_fwd_bwd_s"] > 0
  assert benchmark.input_pipeline_rate(cfg, batches=2, warmup=1)["input_images_per_s"] > 0
