"""The ``tripod`` command line: thin typed entry points over ``training`` and ``services``.

Each command imports its heavy modules inside its body, so ``tripod --help`` and the serving verbs start fast
and work with the serving install alone.  A user's mistake prints one line and exits with status 2; a
traceback means a bug.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from services.errors import TripodError

app = typer.Typer(
    name="tripod",
    help="Tripod: tables in, profiled and explained ONNX inference pipelines out, served by BentoML.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

USER_ERROR = 2


def fail(message: str) -> NoReturn:
    typer.echo(f"tripod: error: {message}", err=True)
    raise SystemExit(USER_ERROR)


def _require_training() -> None:
    try:
        import sklearn  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError:
        fail("this command needs the training extras: pip install -e '.[train]'")


@app.command()
def prepare(
    data: Annotated[Path, typer.Option(help="raw reviews table (CSV, CSV.gz or Parquet)")],
    out: Annotated[Path, typer.Option(help="prepared table to write (.parquet or .csv)")],
    rating_column: Annotated[str, typer.Option(help="1-5 star rating column")] = "Rating",
    text_column: Annotated[str, typer.Option(help="review text column")] = "Review Text",
    label_column: Annotated[str, typer.Option(help="name of the sentiment column to create")] = "sentiment",
    text_out: Annotated[str, typer.Option(help="name of the text column to create")] = "review_body",
) -> None:
    """Turn star ratings into sentiment labels (1-2 negative, 3 neutral, 4-5 positive)."""
    _require_training()
    from training.data import run_prepare

    rows = run_prepare(
        data, out, rating_column=rating_column, text_column=text_column, label_column=label_column, text_out=text_out
    )
    typer.echo(f"wrote {rows} rows to {out}")


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="training table (CSV, CSV.gz or Parquet)")],
    target: Annotated[str, typer.Option(help="label column")],
    text_columns: Annotated[str, typer.Option(help="comma-separated free-text input columns")],
    out: Annotated[Path, typer.Option(help="model root; versions go to OUT/v<N>, OUT/latest points at the newest")],
    seed: Annotated[int, typer.Option(help="seed of the split and the model")] = 42,
    sample: Annotated[int | None, typer.Option(help="train on a stratified sample of this many rows")] = None,
) -> None:
    """Train the TF-IDF + logistic regression baseline and export it as three ONNX stages."""
    _require_training()
    from training.train import run_training

    columns = [name.strip() for name in text_columns.split(",") if name.strip()]
    version_dir = run_training(data, target, columns, out, seed=seed, sample=sample)
    from services.artifacts import read_manifest

    manifest = read_manifest(version_dir)
    metrics, parity = manifest.metrics, manifest.parity
    typer.echo(
        f"model written to {version_dir}: test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}; "
        f"ONNX parity on {parity.rows} rows: labels {parity.label_agreement:.2%}, "
        f"max |Δp| {parity.max_abs_probability_diff:.1e}"
    )


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="model directory (or its latest link)")],
    input: Annotated[Path, typer.Option("--input", help="CSV with a header, or JSON Lines")],
    output: Annotated[Path, typer.Option(help="predictions to write (.jsonl or .csv)")],
    batch_size: Annotated[int, typer.Option(min=1, help="rows per ONNX call")] = 256,
) -> None:
    """Predict every row of a file with the same ONNX runtime the server uses."""
    from services.batch import predict_file
    from services.runtime import InferencePipeline

    pipeline = InferencePipeline.from_directory(model)
    rows = predict_file(pipeline, input, output, batch_size=batch_size)
    typer.echo(f"wrote {rows} predictions to {output}")


@app.command()
def serve(
    model: Annotated[Path | None, typer.Option(help="model directory; default $TRIPOD_MODEL_DIR")] = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the entry service")] = 3000,
) -> None:
    """Serve the model over HTTP with BentoML (entry service + three stage services)."""
    from services.artifacts import load_manifest
    from services.settings import ServingSettings

    settings = ServingSettings.from_env()
    if model is not None:
        settings = settings.model_copy(update={"model_dir": model.expanduser().absolute()})
    manifest = load_manifest(settings.model_dir)  # refuse a broken model before starting any process
    typer.echo(f"serving {manifest.name} {manifest.version} from {settings.model_dir} on http://{host}:{port}")
    command = [sys.executable, "-m", "bentoml", "serve", "services.service:Tripod", "--host", host, "--port", str(port)]
    env = {**os.environ, **settings.environ()}
    try:
        raise SystemExit(subprocess.call(command, env=env))
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except TripodError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
