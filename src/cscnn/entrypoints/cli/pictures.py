"""`cscnn attention`: what each model's spatial attention looks at, per category, in one picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cscnn.entrypoints.cli.modelling import app
from cscnn.entrypoints.cli.options import DataDir, fail
from cscnn.errors import CSCNNError


@app.command("attention")
def attention_cmd(
    data: DataDir,
    model: Annotated[
        list[str],
        typer.Option(
            "--model", help="NAME=CHECKPOINT (a folder written by `cscnn train`), once per model: e.g. cbam=m/cbam."
        ),
    ],
    out: Annotated[Path, typer.Option(help="PNG to write.")],
    per_category: Annotated[int, typer.Option(help="Items drawn per category.", min=1, max=6)] = 2,
    layer: Annotated[int, typer.Option(help="Conv layer whose spatial attention is drawn (1-5).", min=1, max=5)] = 1,
) -> None:
    """Spatial attention of one or more models over the same items of each category (map / its mean, one
    colour scale). With one model, its learned category prior maps are drawn too (CSCNN)."""
    from cscnn.data.io import open_world
    from cscnn.training.attention_plots import attention_comparison_png, attention_png

    try:
        models = {}
        for spec in model:
            name, sep, folder = spec.partition("=")
            if not sep or not name or not folder:
                raise CSCNNError(f"--model {spec!r}: write NAME=CHECKPOINT_FOLDER, e.g. cscnn=models/cscnn")
            models[name] = Path(folder)
        world = open_world(data)
        if len(models) == 1:
            written = attention_png(next(iter(models.values())), world, out, per_category, layer - 1)
            if written is None:
                raise CSCNNError(f"{model[0]}: this model has no spatial attention to draw")
        else:
            attention_comparison_png(models, world, out, per_category, layer - 1)
    except (CSCNNError, ValueError) as exc:
        fail(exc)
    typer.echo(f"attention picture -> {out}")
