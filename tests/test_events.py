"""events.py: TensorBoard scalars without TensorFlow, and the one writer of a step's scalars."""
import glob
import json
import logging

from tensorboard.backend.event_processing import event_file_loader

from alexnet_jax.base import events


def _scalars(path):
  return [(e.step, v.tag, v.simple_value)
          for e in event_file_loader.LegacyEventFileLoader(path).Load()
          for v in e.summary.value]


def test_metric_writer_fans_a_steps_scalars_out(tmp_path, caplog):
  writer = events.MetricWriter(str(tmp_path), steps_per_epoch=4)
  with caplog.at_level(logging.INFO):
    writer.write(2, {"train_loss": 1.5, "learning_rate": 0.5}, "step 2/8: loss 1.5")
    writer.write(4, {"eval_top1_error": 0.25})
  writer.close()
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert rows == [{"step": 2, "epoch": 0.5, "train_loss": 1.5, "learning_rate": 0.5},
                  {"step": 4, "epoch": 1.0, "eval_top1_error": 0.25}]
  (path,) = glob.glob(str(tmp_path / "events.out.tfevents.*"))
  assert _scalars(path) == [(2, "train_loss", 1.5), (2, "learning_rate", 0.5),
                            (4, "eval_top1_error", 0.25)]
  assert [r.getMessage() for r in caplog.records if "step 2/8" in r.getMessage()] == [
      "step 2/8: loss 1.5"]


def test_metric_writer_without_files_only_logs(tmp_path, caplog):
  writer = events.MetricWriter(str(tmp_path), steps_per_epoch=1, files=False)
  with caplog.at_level(logging.INFO):
    writer.write(1, {"train_loss": 1.0}, "step 1/1")
  writer.close()
  assert list(tmp_path.iterdir()) == []
  assert any(r.getMessage() == "step 1/1" for r in caplog.records)
