"""`cscnn attention` and the per-candidate attention picture: relative maps, priors, clear errors."""

from __future__ import annotations

import numpy as np
import torch
from typer.testing import CliRunner

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.entrypoints.cli import app
from cscnn.training.attention_plots import _picked, _spatial_maps, attention_png
from cscnn.training.checkpoint import build_model, load_checkpoint, save_checkpoint
from cscnn.training.stream import fit_encoder


def _checkpoint(world_dir, out, variant: str):
    """An untrained checkpoint of `variant` on the tiny world (pictures need a model, not a good one)."""
    torch.manual_seed(0)
    cfg = load_config("tiny", overrides=[f"model.variant={variant}", "model.attention_gate=scaled"])
    world = open_world(world_dir)
    encoder = fit_encoder(world, world.days[:2], cfg.train.chunk_rows)
    save_checkpoint(out, build_model(cfg, encoder), encoder, cfg, extra={})
    return out


def test_relative_maps_average_one_and_differ_by_category_for_cscnn(tiny_world, tmp_path) -> None:
    model_dir = _checkpoint(tiny_world, tmp_path / "cscnn", "cscnn")
    world = open_world(tiny_world)
    loaded = load_checkpoint(model_dir)
    sub = _picked(world, loaded[1].categories, 2)
    relative, images = _spatial_maps(loaded, sub, layer=0)
    assert relative.shape[0] == len(sub.items) == images.shape[0]
    np.testing.assert_allclose(relative.mean(axis=(1, 2)), 1.0, rtol=1e-5)
    assert attention_png(model_dir, world, tmp_path / "one.png") == tmp_path / "one.png"
    assert (tmp_path / "one.png").stat().st_size > 5_000


def test_cli_draws_cbam_against_cscnn_and_names_bad_input(tiny_world, tmp_path) -> None:
    cbam = _checkpoint(tiny_world, tmp_path / "cbam", "cbam")
    cscnn = _checkpoint(tiny_world, tmp_path / "cscnn", "cscnn")
    cnn = _checkpoint(tiny_world, tmp_path / "cnn", "cnn")
    runner = CliRunner()
    out = tmp_path / "cmp.png"
    args = ["attention", "--data", str(tiny_world), "--out", str(out)]
    result = runner.invoke(app, [*args, "--model", f"cbam={cbam}", "--model", f"cscnn={cscnn}"])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 5_000
    bad = runner.invoke(app, [*args, "--model", str(cscnn)])
    assert bad.exit_code != 0 and "NAME=CHECKPOINT_FOLDER" in bad.output
    no_spatial = runner.invoke(app, [*args, "--model", f"cnn={cnn}"])
    assert no_spatial.exit_code != 0 and "no spatial attention" in no_spatial.output
