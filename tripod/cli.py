"""The ``tripod`` command line: thin typed entry points over ``training`` and ``services``.

Each command imports its heavy modules inside its body, so ``tripod --help`` and the serving verbs start fast
and work with the serving install alone.  A user's mistake prints one line and exits with status 2; a
traceback means a bug.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn

import typer
import typer.main

from services.errors import TripodError
from tripod.cli_data import register_data_commands
from tripod.cli_keys import register_keys_commands
from tripod.cli_models import register_models_commands
from tripod.cli_monitor import register_monitor_commands

if TYPE_CHECKING:  # the training extras are imported only by the commands that need them
    from training.automl.candidate import Preset
    from training.problem import ProblemType

app = typer.Typer(
    name="tripod",
    help="Tripod: tables in, profiled and explained ONNX inference pipelines out, served by BentoML.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

USER_ERROR = 2
INTERRUPTED = 130
PROBLEM_TYPES: dict[str, ProblemType | Literal["auto"]] = {
    "auto": "auto",
    "binary": "binary",
    "multiclass": "multiclass",
    "regression": "regression",
}
PRESETS: dict[str, Preset] = {"fast": "fast", "balanced": "balanced", "best": "best"}


def fail(message: str) -> NoReturn:
    typer.echo(f"tripod: error: {message}", err=True)
    raise SystemExit(USER_ERROR)


def _require_training() -> None:
    try:
        import skl2onnx  # noqa: F401
        import sklearn  # noqa: F401
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
        data,
        out,
        rating_column=rating_column,
        text_column=text_column,
        label_column=label_column,
        text_out=text_out,
    )
    typer.echo(f"wrote {rows} rows to {out}")


@app.command()
def train(
    target: Annotated[str, typer.Option(help="label column")],
    text_columns: Annotated[str, typer.Option(help="comma-separated free-text input columns")],
    out: Annotated[
        Path, typer.Option(help="model root; versions go to OUT/v<N>, OUT/latest points at the newest")
    ],
    data: Annotated[Path | None, typer.Option(help="training table (CSV, CSV.gz or Parquet)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the split and the model")] = 42,
    sample: Annotated[int | None, typer.Option(help="train on a stratified sample of this many rows")] = None,
    lake: Annotated[
        str | None, typer.Option(envvar="TRIPOD_LAKE", help="lake root for --dataset / --sql")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="train on this dataset of the lake instead of --data")
    ] = None,
    sql: Annotated[str | None, typer.Option(help="train on the result of this DuckDB query")] = None,
) -> None:
    """Train the TF-IDF + logistic regression baseline and export it as three ONNX stages."""
    _require_training()
    from services.artifacts import ensure_model_root
    from training.lake import materialized_input
    from training.train import run_training
    from tripod.cli_data import input_spec

    ensure_model_root(out)  # a bad --out fails now, not after training
    columns = [name.strip() for name in text_columns.split(",") if name.strip()]
    with materialized_input(input_spec(str(data) if data else None, lake, dataset, sql)) as path:
        version_dir = run_training(path, target, columns, out, seed=seed, sample=sample)
    from services.artifacts import read_manifest

    manifest = read_manifest(version_dir)
    metrics, parity = manifest.metrics, manifest.parity
    typer.echo(
        f"model written to {version_dir}: test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}; "
        f"ONNX parity on {parity.rows} rows: labels {parity.label_agreement:.2%}, "
        f"max |Δp| {parity.max_abs_probability_diff:.1e}"
    )


def _columns(value: str | None) -> list[str] | None:
    return None if value is None else [name.strip() for name in value.split(",") if name.strip()]


@app.command()
def automl(
    target: Annotated[str, typer.Option(help="column to predict")],
    out: Annotated[Path, typer.Option(help="model root; the best model goes to OUT/v<N>, runs to OUT/runs/")],
    data: Annotated[Path | None, typer.Option(help="training table (CSV, CSV.gz or Parquet)")] = None,
    lake: Annotated[
        str | None, typer.Option(envvar="TRIPOD_LAKE", help="lake root for --dataset / --sql")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="search on this dataset of the lake instead of --data")
    ] = None,
    sql: Annotated[str | None, typer.Option(help="search on the result of this DuckDB query")] = None,
    problem_type: Annotated[str, typer.Option(help="auto|binary|multiclass|regression")] = "auto",
    objective: Annotated[
        str | None,
        typer.Option(
            help="accuracy|macro_f1|f1|auc|log_loss|mse|rmse|mae|r2 (default: macro_f1, f1 or rmse)"
        ),
    ] = None,
    time_budget: Annotated[str, typer.Option(help="search budget, e.g. 90s, 20m, 1h")] = "10m",
    max_candidates: Annotated[int | None, typer.Option(min=1, help="stop after this many candidates")] = None,
    preset: Annotated[str, typer.Option(help="fast|balanced|best")] = "balanced",
    seed: Annotated[int, typer.Option(help="seed of the split, the sampler and every candidate")] = 42,
    text: Annotated[
        str | None, typer.Option(help="comma-separated free-text columns (overrides inference)")
    ] = None,
    categorical: Annotated[str | None, typer.Option(help="comma-separated categorical columns")] = None,
    numeric: Annotated[str | None, typer.Option(help="comma-separated numeric columns")] = None,
    ignore: Annotated[str | None, typer.Option(help="comma-separated columns to leave out")] = None,
    families: Annotated[
        str | None, typer.Option(help="comma-separated families instead of the preset's")
    ] = None,
    sample: Annotated[
        int | None, typer.Option(min=10, help="use a stratified sample of this many rows")
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="name of the study; an existing one is resumed")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: SQLite in the run dir)")
    ] = None,
    max_latency_ms: Annotated[
        float | None,
        typer.Option(
            min=0.001, help="choose only models whose single-review p99 is at most this (ms, measured)"
        ),
    ] = None,
    max_model_mb: Annotated[
        float | None,
        typer.Option(min=0.001, help="choose only models whose ONNX stages are at most this (MiB)"),
    ] = None,
) -> None:
    """Infer the problem, search candidates within the budget, export the best as ONNX stages."""
    _require_training()
    from services.artifacts import ensure_model_root
    from training.automl.run import run_automl
    from training.lake import materialized_input
    from tripod.cli_data import input_spec

    ensure_model_root(out)  # a bad --out fails now, not after the search

    problem = PROBLEM_TYPES.get(problem_type) or fail(
        f"--problem-type must be auto, binary, multiclass or regression, not {problem_type!r}"
    )
    chosen_preset = PRESETS.get(preset) or fail(f"--preset must be fast, balanced or best, not {preset!r}")
    with materialized_input(input_spec(str(data) if data else None, lake, dataset, sql)) as path:
        result = run_automl(
            path,
            target,
            out,
            problem_type=problem,
            objective=objective,
            time_budget=time_budget,
            max_candidates=max_candidates,
            preset=chosen_preset,
            seed=seed,
            text=_columns(text),
            categorical=_columns(categorical),
            numeric=_columns(numeric),
            ignore=_columns(ignore),
            families=_columns(families),
            sample=sample,
            study_name=study_name,
            storage=storage,
            max_latency_ms=max_latency_ms,
            max_model_mb=max_model_mb,
            echo=typer.echo,
        )
    typer.echo(f"model written to {result.version_dir}")


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="model directory (or its latest link)")],
    input: Annotated[Path, typer.Option("--input", help="CSV with a header, or JSON Lines")],
    output: Annotated[Path, typer.Option(help="predictions to write (.jsonl or .csv)")],
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="records per ONNX call")] = 256,
) -> None:
    """Predict every row of a file with the same pipeline the server uses."""
    from services.batch.files import predict_file
    from services.runtime.limits import Limits
    from services.runtime.pipeline import Pipeline
    from services.settings import ServingSettings

    settings = ServingSettings.from_env()
    limits = Limits(max_text_chars=settings.max_text_chars, chunk_rows=batch_size)
    pipeline = Pipeline.from_directory(model, threads=settings.onnx_threads, limits=limits)
    with _signals_request_stop() as stop:
        rows = predict_file(pipeline, input, output, batch_size=batch_size, stop=stop)
    typer.echo(f"wrote {rows} predictions to {output}")


@app.command()
def transform(
    input: Annotated[str, typer.Option("--input", help="local path, s3://bucket/prefix, or a manifest file")],
    output: Annotated[
        str, typer.Option(help="local directory or s3://bucket/prefix for <relative>.out files")
    ],
    model: Annotated[
        Path | None, typer.Option(help="model directory: answer in this machine's processes")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="POST to <URL>/invocations of a running container")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            envvar="TRIPOD_TOKEN_FILE",
            help="the endpoint's API token, first line of this file (default: $TRIPOD_TOKEN)",
        ),
    ] = None,
    input_type: Annotated[str, typer.Option(help="prefix|manifest")] = "prefix",
    content_type: Annotated[
        str, typer.Option(help="text/csv|application/json|application/jsonlines")
    ] = "text/csv",
    accept: Annotated[str | None, typer.Option(help="answer format (default: the content type)")] = None,
    split_type: Annotated[str, typer.Option(help="None (a file is one record) | Line")] = "None",
    batch_strategy: Annotated[str | None, typer.Option(help="SingleRecord|MultiRecord")] = None,
    max_payload_mb: Annotated[
        int | None, typer.Option(help="largest request (default 6, at most 100)")
    ] = None,
    max_concurrent_transforms: Annotated[
        int | None, typer.Option(help="requests in flight (endpoint)")
    ] = None,
    assemble_with: Annotated[str, typer.Option(help="None|Line")] = "None",
    input_filter: Annotated[str, typer.Option(help="JSONPath of each record sent to the model")] = "$",
    output_filter: Annotated[str, typer.Option(help="JSONPath of each joined record written")] = "$",
    join_source: Annotated[str, typer.Option(help="None|Input")] = "None",
    compression: Annotated[str, typer.Option(help="None|Gzip (inputs)")] = "None",
    response_keys: Annotated[
        str | None, typer.Option(help="answer keys, e.g. predicted_label,probabilities")
    ] = None,
    max_record_errors: Annotated[str, typer.Option(help="bad records a file may hold: N or P%")] = "0",
    csv_header: Annotated[
        bool, typer.Option("--csv-header", help="the first line of each CSV is a header")
    ] = False,
    shard_index: Annotated[
        int | None, typer.Option(help="this shard (default $JOB_COMPLETION_INDEX or 0)")
    ] = None,
    shard_count: Annotated[
        int | None, typer.Option(help="shards in all (default $TRIPOD_SHARD_COUNT or 1)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes of the in-process engine (default: cores)")
    ] = None,
    split_mb: Annotated[
        int | None, typer.Option(help="cut line-split inputs larger than this into byte ranges (default 64)")
    ] = None,
    max_records_per_request: Annotated[
        int | None,
        typer.Option(help="records in one mini-batch at most (default 10000; lower for slow models)"),
    ] = None,
) -> None:
    """Batch transform with SageMaker's semantics: every input object becomes <output>/<relative>.out; a rerun
    of the same command resumes; exits 1 naming the files that failed."""
    from services.batch.job import run_transform
    from services.batch.options import TransformOptions

    options = TransformOptions.build(
        model=model, endpoint=endpoint, token_file=token_file, input=input, input_type=input_type, output=output,
        content_type=content_type, accept=accept, split_type=split_type, batch_strategy=batch_strategy,
        max_payload_mb=max_payload_mb, max_concurrent_transforms=max_concurrent_transforms,
        assemble_with=assemble_with, input_filter=input_filter, output_filter=output_filter,
        join_source=join_source, compression=compression, response_keys=response_keys,
        max_record_errors=max_record_errors, csv_header=csv_header, shard_index=shard_index,
        shard_count=shard_count, workers=workers, split_mb=split_mb,
        max_records_per_request=max_records_per_request,
    )  # fmt: skip
    with _sigterm_as_interrupt():
        summary = run_transform(options)
    totals = summary.as_dict()["totals"]
    typer.echo(
        f"transform {'succeeded' if summary.succeeded else 'failed'}: {totals['files']} file(s), "
        f"{totals['records']} record(s), {totals['errors']} bad record(s) in {summary.seconds:.1f} s"
    )
    for failed in summary.failed:
        typer.echo(f"tripod: failed: {failed.input}: {failed.reason}", err=True)
    if not summary.succeeded:
        raise SystemExit(1)


def _require_tls_files(certfile: Path, keyfile: Path) -> None:
    """The certificate and key load together (the server would fail later, in every worker)."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise TripodError(
            f"cannot use --ssl-certfile {certfile} with --ssl-keyfile {keyfile}: {exc}"
        ) from exc


@app.command()
def serve(
    model: Annotated[Path | None, typer.Option(help="model directory; default $TRIPOD_MODEL_DIR")] = None,
    host: Annotated[str | None, typer.Option(help="address (127.0.0.1; 0.0.0.0 with --sagemaker)")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="port (3000; 8080 with --sagemaker)")
    ] = None,
    sagemaker: Annotated[
        bool, typer.Option("--sagemaker", help="the SageMaker container contract, on 0.0.0.0:8080")
    ] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="entry processes ($TRIPOD_WORKERS)")] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="threads per stage service, with --stages services ($TRIPOD_THREADS)"),
    ] = None,
    stages: Annotated[
        str | None,
        typer.Option(
            help="where the three stages run: local (in each entry worker) or services ($TRIPOD_STAGES)"
        ),
    ] = None,
    variants: Annotated[
        Path | None,
        typer.Option(
            help="production variants file (YAML/JSON), served instead of --model ($TRIPOD_VARIANTS)"
        ),
    ] = None,
    auth_keys: Annotated[
        Path | None,
        typer.Option(help="API keys file (tripod keys create); unset: no authentication ($TRIPOD_AUTH_KEYS)"),
    ] = None,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate chain, PEM ($TRIPOD_SSL_CERTFILE)")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="TLS private key, PEM ($TRIPOD_SSL_KEYFILE)")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="json (one object per line) or text ($TRIPOD_LOG_FORMAT)")
    ] = None,
) -> None:
    """Serve the model over HTTP with BentoML (the entry service runs the three ONNX stages, or calls them
    as three stage services with --stages services)."""
    from services.artifacts import ModelArtifact
    from services.http.entrypoint import SAGEMAKER_HOST, SAGEMAKER_PORT, bentoml_serve_command
    from services.http.worker import die_with_parent
    from services.monitoring.variants import served_variants
    from services.settings import ENV_PREFIX, ServingSettings

    settings = ServingSettings.from_env()
    model_dir = model.expanduser().absolute() if model else None
    variants_file = variants.expanduser().absolute() if variants else None
    overrides = {
        "model_dir": model_dir,
        "workers": workers,
        "threads": threads,
        "stages": stages,
        "variants": variants_file,
        "auth_keys": auth_keys,
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
        "log_format": log_format,
    }
    settings = ServingSettings.from_env(
        {
            **settings.environ(),
            **{
                ENV_PREFIX + name.upper(): str(value)
                for name, value in overrides.items()
                if value is not None
            },
        }
    )
    host = host or (SAGEMAKER_HOST if sagemaker else "127.0.0.1")
    port = port or (SAGEMAKER_PORT if sagemaker else 3000)
    # Refuse a broken model directory (files, manifest), keys file or certificate, and a taken port, before
    # starting any process.
    specs = served_variants(settings.variants, settings.model_dir)
    if settings.auth_keys is not None:
        from services.http.auth import read_keys

        read_keys(settings.auth_keys)
    if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
        _require_tls_files(settings.ssl_certfile, settings.ssl_keyfile)
    artifacts = [ModelArtifact.from_directory(spec.model) for spec in specs]
    _require_free_port(host, port)
    # BentoML keeps Prometheus' multiprocess files in $BENTOML_HOME and empties that folder when a server
    # starts, so two servers sharing a home wipe each other's metrics: each server gets a home of its own.
    with tempfile.TemporaryDirectory(prefix="tripod-bentoml-home-") as home:
        env = {**os.environ, **settings.environ(), "BENTOML_HOME": home}
        graceful = ["--timeout-graceful-shutdown", str(settings.shutdown_timeout_s)]
        # The server dies with this process even when it is killed with SIGKILL (no orphan keeps the port).
        command = bentoml_serve_command(host, port, extra=graceful)
        # preexec_fn runs between fork and exec; this process starts no threads and prctl is async-signal-safe.
        process = subprocess.Popen(command, env=env, preexec_fn=die_with_parent)  # noqa: PLW1509
        try:
            # The graphs are checked while the server boots: the check loads onnxruntime (about 0.15 s), which
            # would otherwise add to the cold start; a model it refuses stops the server before it answers.
            from services.runtime.stages import LocalStages

            for artifact in artifacts:
                LocalStages(artifact.graphs)
        except TripodError:
            process.kill()
            process.wait()
            raise
        say: Callable[[str], None] = typer.echo
        if settings.log_format == "json":  # the server's own lines are JSON: so are these
            from services.http.logs import install

            install("json")
            say = logging.getLogger("tripod.serve").info
        for spec, artifact in zip(specs, artifacts, strict=True):
            manifest = artifact.manifest
            role = (
                " (shadow)"
                if spec.shadow
                else ""
                if settings.variants is None
                else f" (weight {spec.weight:g})"
            )
            say(
                f"serving {manifest.name} {manifest.version} from {artifact.directory} as {spec.name}{role} "
                f"on {'https' if settings.ssl_certfile else 'http'}://{host}:{port}"
            )
        signal.signal(signal.SIGTERM, lambda *_: process.terminate())
        try:
            code = process.wait()
        except KeyboardInterrupt:  # the server got the same Ctrl-C: let it finish stopping
            process.wait()
            code = 130
    raise SystemExit(code)


def _require_free_port(host: str, port: int) -> None:
    """Fail with one line when the address cannot be bound (in use, or not an address of this machine)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        fail(f"--host {host!r} is not an address: {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror}")


@contextlib.contextmanager
def _signals_request_stop() -> Iterator[threading.Event]:
    """Ctrl-C and SIGTERM set an event that a chunked loop checks between chunks: the loop stops at a safe
    point, never with an exception thrown into an ONNX call."""
    stop = threading.Event()

    def request(*_: object) -> None:
        stop.set()

    previous = {number: signal.signal(number, request) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM stop a command the way Ctrl-C does, so its clean-up (partial files) runs either way."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# Data commands (ingest, query, datasets, explore, bias, balance) live in their own module.
register_data_commands(app)
# Model delivery (models pull, models verify): the init container's verbs.
register_models_commands(app)
register_keys_commands(app)
# Model monitoring (monitor baseline, monitor run): training-side analysis of what serving captured.
register_monitor_commands(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: every user mistake — a bad option, a missing file, a broken model — is one line on
    stderr and exit status 2; an interrupt is one line and 130."""
    command = typer.main.get_command(app)
    try:
        code = command.main(
            args=list(argv) if argv is not None else None, prog_name="tripod", standalone_mode=False
        )
    except TripodError as exc:
        fail(str(exc))
    except typer.Abort:
        typer.echo("tripod: interrupted", err=True)
        raise SystemExit(INTERRUPTED) from None
    except KeyboardInterrupt:
        typer.echo("tripod: interrupted", err=True)
        raise SystemExit(INTERRUPTED) from None
    except typer.TyperException as exc:  # a usage mistake: unknown option, bad value, missing option
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `tripod` alone: the help, not an error
            typer.echo(message)
            raise SystemExit(0) from None
        fail(" ".join(message.split()))
    if code == INTERRUPTED:  # Ctrl-C or SIGTERM inside a command (Typer turns it into this exit code)
        typer.echo("tripod: interrupted", err=True)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
