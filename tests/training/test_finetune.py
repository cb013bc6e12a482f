"""Fine-tuning: a small CNN trained from scratch on tiny demo images (the CPU path)."""

from __future__ import annotations

from pathlib import Path

from db.models import Run
from inference.bundle import load_bundle
from tests.training.helpers import demo_copy
from training.fit import FitParams
from training.jobs import run_fit, run_status


def test_tiny_cnn_from_scratch_reaches_high_accuracy(tmp_path: Path) -> None:
    cat = demo_copy(tmp_path, tmp_path / "cache")
    params = FitParams(backbone="tiny", finetune=True, image_size=64, epochs=25)
    run_id = run_fit(cat, params)
    status = run_status(cat, run_id)
    assert status["status"] == "succeeded", status
    with cat.read() as s:
        run = s.get(Run, run_id)
        metrics = dict(run.metrics)
        folder = cat.data_dir / run.bundle_path
    assert metrics["test"]["stage1"]["top1"] >= 0.85
    assert metrics["timing"]["finetune_s"] > 0
    bundle = load_bundle(folder)
    assert bundle.backbone_state is not None
    assert (folder / "backbone.safetensors").is_file()
