"""Subcommands for data and models: worlds, training, evaluation, the embedding table, the comparison, and the
two checks of the daily loop that also run on their own (validate, gate)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from cscnn.config import load_config
from cscnn.entrypoints.cli.options import (
    EPILOG,
    ConfigFile,
    DataDir,
    Device,
    ExitCode,
    ModelDir,
    Overrides,
    Profile,
    Quiet,
    StateDir,
    fail,
    print_json,
    require,
    show_progress,
)
from cscnn.errors import CSCNNError
from cscnn.settings import DEFAULT_PROFILE
from cscnn.variants import VARIANTS

app = typer.Typer(help="CSCNN visual-aware CTR prediction.", epilog=EPILOG, no_args_is_help=True, add_completion=False)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"cscnn {version('cscnn-ctr')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """CSCNN visual-aware CTR prediction."""
    # MLflow's INFO lines (database migrations, run links) are for MLflow's own users; warnings still show.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


data_app = typer.Typer(help="Create, import and describe worlds (datasets in the data contract).", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="World folder to write.")],
    profile: Profile = DEFAULT_PROFILE,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the profile's).")] = None,
    force: Annotated[bool, typer.Option(help="Replace a world generated with another config.")] = False,
    config: ConfigFile = None,
    overrides: Overrides = None,
) -> None:
    """Generate a synthetic world (deterministic by seed). Re-running with the same config is a no-op."""
    from cscnn.data.synth import generate_world

    try:
        world_cfg = load_config(profile, config, overrides).world
        if seed is not None:
            world_cfg.seed = seed
        summary = generate_world(world_cfg, out, force=force)
    except CSCNNError as exc:
        fail(exc)
    typer.echo(f"world in {out}: {json.dumps(summary.get('totals', summary), sort_keys=True)}")


@data_app.command("import-amazon")
def data_import_amazon(
    reviews: Annotated[Path, typer.Option(help="Reviews file, JSON lines (.json or .json.gz), 2014 or 2018 format.")],
    meta: Annotated[Path, typer.Option(help="Metadata file, JSON lines (.json or .json.gz).")],
    images: Annotated[Path, typer.Option(help="Folder of local images named <asin>.jpg/.jpeg/.png.")],
    out: Annotated[Path, typer.Option(help="World folder to write.")],
    neg_ratio: Annotated[int, typer.Option(help="Sampled negatives per review.")] = 4,
    seed: int = 0,
    category_level: Annotated[int, typer.Option(help="Level of the category path to use; -1: leaf.")] = -1,
    missing_image: Annotated[
        str, typer.Option(help="fail or skip items without an image (skips are reported).")
    ] = "fail",
    force: Annotated[bool, typer.Option(help="Replace an existing, non-empty output folder.")] = False,
) -> None:
    """Import McAuley's Amazon review data: a review is a click, negatives are sampled per user."""
    from cscnn.data.amazon import import_amazon

    try:
        report = import_amazon(reviews, meta, images, out, neg_ratio, seed, category_level, missing_image, force)
    except CSCNNError as exc:
        fail(exc)
    print_json(report)


@data_app.command("photo-amazon")
def data_photo_amazon(
    out: Annotated[Path, typer.Option(help="Folder for the raw Amazon-format files (reviews, meta, images, truth).")],
    import_to: Annotated[
        Path | None,
        typer.Option(help="Also import them with import-amazon into this world folder and write its oracle truth."),
    ] = None,
    items: Annotated[int, typer.Option(help="Catalogue size (items cut from the photographs).")] = 1500,
    users: Annotated[int, typer.Option(help="Number of reviewers.")] = 2000,
    days: Annotated[int, typer.Option(help="Number of days of reviews.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the generator (and of import-amazon's negatives).")] = 0,
    image_size: Annotated[int, typer.Option(help="Side of the square product images, in pixels.")] = 64,
    new_item_share: Annotated[float, typer.Option(help="Share of items launched after the first day.")] = 0.25,
    reviews_per_user_day: Annotated[float, typer.Option(help="Mean reviews per user and day.")] = 2.25,
    start_day: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2014-03-03",
    shared_photos: Annotated[
        bool, typer.Option(help="Every category cuts its items from the same photographs (categories look alike).")
    ] = False,
    neg_ratio: Annotated[int, typer.Option(help="With --import-to: sampled negatives per review.")] = 4,
    force: Annotated[bool, typer.Option(help="Replace an existing raw folder (and world folder).")] = False,
) -> None:
    """Generate an Amazon-format dataset (2014 release) from real photographs with a known review model.

    Product images are crops of photographs shipped in scikit-image and scikit-learn; buyers of each category
    favour a different pixel statistic (docs/photo_world.md). Deterministic by seed; a re-run with the same
    settings reuses --out. With --import-to the files go through import-amazon and the world gets
    truth/probability/<day>.parquet, the oracle's click probability of each impression.
    """
    require(("skimage",), "photos", "cscnn data photo-amazon")
    from cscnn.data.photo_truth import photo_amazon
    from cscnn.data.photo_world import PhotoWorldConfig

    cfg = PhotoWorldConfig(
        items, users, days, seed, image_size, new_item_share, reviews_per_user_day, start_day, shared_photos
    )
    try:
        summary = photo_amazon(cfg, out, import_to, neg_ratio, force)
    except CSCNNError as exc:
        fail(exc)
    print_json(summary)


@data_app.command("contract")
def data_contract() -> None:
    """Print the data contract (tables, columns, constraints) as Markdown."""
    from cscnn.data.schema import contract_markdown

    typer.echo(contract_markdown())


@app.command("train")
def train_cmd(
    data: DataDir,
    out: Annotated[Path, typer.Option(help="Checkpoint folder to write.")],
    profile: Profile = DEFAULT_PROFILE,
    variant: Annotated[str | None, typer.Option(help=f"Model variant: {', '.join(VARIANTS)}.")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed (default: the profile's).")] = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Data-parallel worker processes on this machine (torchrun; default: train.workers)."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last day to use (YYYY-MM-DD); later days are ignored.")] = None,
    quiet: Quiet = False,
) -> None:
    """Train one model end to end (streamed data, image dedup per batch, early stopping on validation AUC).

    With --workers N, N processes train one model with synchronous data parallelism (DDP); the result does
    not depend on N. Under an external launcher (torchrun, Kubeflow Trainer) each process is one worker.
    """
    from cscnn.training import distributed
    from cscnn.training.launch import run_training

    try:
        extra = [*(overrides or [])]
        if variant is not None:
            extra.append(f"model.variant={variant}")
        if seed is not None:
            extra.append(f"train.seed={seed}")
        if workers is not None:
            extra.append(f"train.workers={workers}")
        cfg = load_config(profile, config, extra)
        card = run_training(data, cfg, out, until=until, progress=show_progress(not quiet))
    except CSCNNError as exc:
        fail(exc)
    if distributed.ranks_from_env().is_main:
        typer.echo(
            f"trained {card['variant']} (model {card['fingerprint']}) with {card.get('workers', 1)} worker(s) in "
            f"{card['train_seconds']:.1f}s: best epoch {card['best_epoch']}, val AUC {card['val_auc']:.4f} -> {out}"
        )


@app.command("evaluate")
def evaluate_cmd(
    data: DataDir,
    model: ModelDir,
    day: Annotated[
        list[str] | None, typer.Option(help="Day(s) to evaluate on (default: the model's test days).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the evaluation JSON to this file.")] = None,
    roc: Annotated[
        Path | None,
        typer.Option(help="Also write the candidate's ROC over the same days to this file (rows for `dvc plots`)."),
    ] = None,
    against_champion: Annotated[
        bool, typer.Option(help="Also evaluate the registry's champion (of --state) on the same days.")
    ] = False,
    profile: Profile = DEFAULT_PROFILE,
    state: StateDir = None,
    device: Device = "auto",
) -> None:
    """Evaluate a checkpoint: AUC, logloss, per-category AUC and cold-start AUC, printed as JSON.

    The output is what the daily pipeline's gate reads (`cscnn.daily.results.Evaluation`): `{"days",
    "candidate", "champion"?, "champion_version"?}`.
    """
    from cscnn.daily.steps import compare_with_champion
    from cscnn.files import write_json
    from cscnn.state import State

    try:
        cfg = load_config(profile, overrides=[f"train.device={device}"])
        evaluation = compare_with_champion(model, data, day, cfg, State.from_env(state), against_champion).to_dict()
    except CSCNNError as exc:
        fail(exc)
    if out is not None:
        write_json(out, evaluation)
    if roc is not None:
        from cscnn.data.io import open_world
        from cscnn.training.plots import roc_points, roc_rows

        try:
            curve, _ = roc_points(model, open_world(data), evaluation["days"])
        except CSCNNError as exc:
            fail(exc)
        write_json(roc, roc_rows(curve))
    print_json(evaluation)


@app.command("embed")
def embed_cmd(
    data: DataDir,
    model: ModelDir,
    out: Annotated[Path, typer.Option(help="Embedding table folder to write.")],
    device: Device = "auto",
    workers: Annotated[int, typer.Option(help="Worker processes sharing the catalogue (torchrun).")] = 1,
) -> None:
    """Precompute every catalogue item's visual vector into a lookup table keyed by the model version."""
    from cscnn.training.launch import run_embedding

    try:
        meta = run_embedding(model, data, out, device, workers)
    except CSCNNError as exc:
        fail(exc)
    typer.echo(
        f"embedding table for model {meta['model_fingerprint']}: {meta['n_items']} items x "
        f"{meta['visual_dim']} -> {out}"
    )


@app.command("compare")
def compare_cmd(
    data: DataDir,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Markdown table to write (raw numbers next to it as .json, runs in <stem>.runs/); default: "
            "docs/results/<name of the --data folder>.md."
        ),
    ] = None,
    profile: Profile = DEFAULT_PROFILE,
    variants: Annotated[
        str,
        typer.Option(
            help="Comma-separated variants; add `attributes` (the ceiling: true attributes) on a generated world."
        ),
    ] = ",".join(name for name, v in VARIANTS.items() if not v.diagnostic),
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..N-1).")] = 5,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples of the test requests for the intervals; 0: seeds only.")
    ] = 1000,
    bootstrap_seed: Annotated[int, typer.Option(help="Seed of the bootstrap resamples.")] = 0,
    config: ConfigFile = None,
    overrides: Overrides = None,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Progress bars per run.")] = False,
) -> None:
    """Train every variant on the same split and seeds; write the results table with paired 95% intervals.

    Resumable: every finished run is kept in `<out stem>.runs/` under a fingerprint of the world's data, the
    config (all but variant and seed), the variant, the seed, the device type, torch and the training code.
    Running the same command again trains only the runs that are missing; the table is rewritten after each.
    """
    from cscnn.data.io import open_world
    from cscnn.training.compare import compare, runs_folder

    try:
        cfg = load_config(profile, config, overrides)
        chosen = [v.strip() for v in variants.split(",") if v.strip()]
        unknown = [v for v in chosen if v not in VARIANTS]
        if unknown:
            raise CSCNNError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
        if seeds < 1 or bootstrap < 0:
            raise CSCNNError(f"--seeds must be >= 1 and --bootstrap >= 0, got {seeds} and {bootstrap}")
        world = open_world(data)
        out = out or Path("docs/results") / f"{Path(data).resolve().name}.md"
        command = "cscnn " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        rows = compare(
            world, cfg, chosen, list(range(seeds)), out, command, show_progress(progress), bootstrap, bootstrap_seed
        )
    except CSCNNError as exc:
        fail(exc)
    typer.echo(
        f"results -> {out} ({len(rows.trained)} run(s) trained, {len(rows.skipped)} found finished in "
        f"{runs_folder(out)})"
    )


@app.command("validate")
def validate_cmd(
    data: DataDir,
    day: Annotated[str, typer.Option(help="Day to validate (YYYY-MM-DD).")],
    out: Annotated[Path, typer.Option(help="Folder for validation.json and the data docs.")],
    previous_day: Annotated[
        str | None,
        typer.Option(
            help="Day to compare the category mix with (default: as the daily loop, the latest day before --day "
            "versioned in --state's data registry, else the day before in --data)."
        ),
    ] = None,
    profile: Profile = DEFAULT_PROFILE,
    config: ConfigFile = None,
    overrides: Overrides = None,
    state: StateDir = None,
) -> None:
    """Great Expectations on one day of raw data (never modified). Exit code 3 when an expectation fails."""
    from cscnn.daily.steps import previous_accepted_day
    from cscnn.state import State
    from cscnn.tools.validation import validate_day

    try:
        cfg = load_config(profile, config, overrides)
        previous = previous_day or previous_accepted_day(data, day, State.from_env(state))
        report = validate_day(data, day, out, cfg.validation, previous_day=previous)
    except CSCNNError as exc:
        fail(exc)
    typer.echo(report.summary())
    typer.echo(f"result: {report.result_path}\ndata docs: {report.docs_path}")
    if not report.success:
        raise typer.Exit(code=ExitCode.REJECTED)


@app.command("gate")
def gate_cmd(
    evaluation: Annotated[
        Path, typer.Option(help="Evaluation JSON (`cscnn evaluate --out`; with --against-champion for a change check).")
    ],
    out: Annotated[Path, typer.Option(help="Decision JSON to write.")],
    profile: Profile = DEFAULT_PROFILE,
    config: ConfigFile = None,
    overrides: Overrides = None,
) -> None:
    """Decide whether a candidate may replace the champion. Writes the decision; exit code 0 either way (a
    decision is not a failure: `dvc repro` goes on to the embedding table)."""
    from cscnn.daily.results import Evaluation
    from cscnn.daily.steps import decide_gate
    from cscnn.files import write_json

    try:
        cfg = load_config(profile, config, overrides)
        record = json.loads(evaluation.read_text())
        if not isinstance(record, dict) or "candidate" not in record:
            raise CSCNNError(f"{evaluation}: not an evaluation (no 'candidate'); write one with `cscnn evaluate --out`")
    except (OSError, json.JSONDecodeError) as exc:
        fail(CSCNNError(f"cannot read the evaluation: {exc}"))
    except CSCNNError as exc:
        fail(exc)
    decision = decide_gate(Evaluation.from_dict(record), cfg)
    write_json(out, decision.to_dict())
    typer.echo(decision.summary())
