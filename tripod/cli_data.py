"""Data commands of the ``tripod`` CLI: ingest, query, datasets, explore, bias, balance, explain.

Thin typed entry points over :mod:`training.lake`, :mod:`training.explore`, :mod:`training.bias` and
:mod:`training.explain`; heavy modules are imported inside each command.  Every command that reads a table takes it as ``--data FILE``,
``--lake DIR_OR_S3_URI --dataset NAME`` or ``--sql "SELECT …"`` (over the lake's datasets when ``--lake`` is
given, or over files DuckDB reads directly).  ``--lake`` defaults to ``$TRIPOD_LAKE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

if TYPE_CHECKING:
    import pandas as pd

    from training.bias import FacetSpec
    from training.bias.balance import BalanceBy
    from training.lake import InputSpec

DataOption = Annotated[
    str | None, typer.Option("--data", help="input table: CSV, CSV.gz or Parquet (local or s3://)")
]
LakeOption = Annotated[
    str | None,
    typer.Option(
        "--lake",
        envvar="TRIPOD_LAKE",
        help="lake root: a directory or s3://bucket/prefix (default: $TRIPOD_LAKE)",
        show_envvar=False,
    ),
]
DatasetOption = Annotated[
    str | None, typer.Option("--dataset", help="input: a dataset of the lake's catalog")
]
SqlOption = Annotated[
    str | None, typer.Option("--sql", help="input: a DuckDB query (over the lake's datasets)")
]


class OrderedOptionsCommand(TyperCommand):
    """Keeps the raw arguments, so that ``--facet age --threshold 40`` ties the threshold to its facet."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["tripod.raw_args"] = list(args)
        return super().parse_args(ctx, args)


BALANCE_BY: dict[str, BalanceBy] = {"class": "class", "facet-class": "facet-class"}


def input_spec(data: str | None, lake: str | None, dataset: str | None, sql: str | None) -> InputSpec:
    from training.lake import InputSpec

    # --lake may come from $TRIPOD_LAKE; it only matters with --dataset or --sql
    return InputSpec(data=data, lake=lake if (dataset or sql) else None, dataset=dataset, sql=sql).validate()


def _load(spec: InputSpec) -> pd.DataFrame:
    from training.lake import load_input

    return load_input(spec)


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def facet_specs(raw_args: list[str]) -> list[FacetSpec]:
    """``--facet`` options in order, each with the ``--facet-value`` / ``--threshold`` options after it."""
    from training.bias import BiasError, FacetSpec

    facets: list[dict[str, Any]] = []
    tokens = iter(enumerate(raw_args))
    for _, token in tokens:
        if token == "--":
            break
        name, _, inline = token.partition("=")
        if name not in ("--facet", "--facet-value", "--threshold"):
            continue
        value = inline if inline or token.endswith("=") else next(tokens, (0, None))[1]
        if value is None:
            continue  # click reports the missing value
        if name == "--facet":
            facets.append({"name": value, "values": [], "threshold": None})
            continue
        if not facets:
            raise BiasError(f"{name} {value} must follow the --facet it belongs to")
        if name == "--facet-value":
            facets[-1]["values"].append(value)
        else:
            if facets[-1]["threshold"] is not None:
                raise BiasError(f"facet {facets[-1]['name']!r} has two thresholds")
            try:
                facets[-1]["threshold"] = float(value)
            except ValueError:
                raise BiasError(f"--threshold must be a number, got {value!r}") from None
    return [FacetSpec(f["name"], tuple(f["values"]), f["threshold"]) for f in facets]


def ingest(
    source: Annotated[str, typer.Argument(help="table to ingest: CSV, CSV.gz or Parquet, local or s3://")],
    dataset: Annotated[str, typer.Option(help="dataset name in the catalog (and its SQL table name)")],
    lake: LakeOption = None,
    partition_by: Annotated[
        list[str] | None, typer.Option(help="partition column(s), outermost first")
    ] = None,
    mode: Annotated[
        str, typer.Option(help="error (default) | overwrite | append, if the dataset exists")
    ] = "error",
) -> None:
    """Write a table into the lake as partitioned Parquet and register it in the lake's catalog."""
    from training.lake import LakeError
    from training.lake import ingest as run_ingest

    if not lake:
        raise LakeError("ingest needs --lake DIR_OR_S3_URI (or TRIPOD_LAKE)")
    entry = run_ingest(source, lake, dataset, partition_by=_split(partition_by), mode=mode)  # type: ignore[arg-type]
    parts = f", partitioned by {', '.join(entry.partitions)}" if entry.partitions else ""
    typer.echo(
        f"ingested {entry.rows} rows into {lake.rstrip('/')}/{entry.location} as {entry.name!r} "
        f"({entry.files} Parquet file{'s' if entry.files != 1 else ''}{parts})"
    )


def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL; catalog datasets are tables by name")],
    lake: LakeOption = None,
    out: Annotated[Path | None, typer.Option(help="write the result to FILE.parquet or FILE.csv")] = None,
    limit: Annotated[int, typer.Option(min=0, help="rows to print when there is no --out")] = 20,
) -> None:
    """Run SQL over the lake (local directory or s3://) and print or save the result."""
    import pandas as pd

    from training.data import write_table
    from training.lake import Lake, connect_duckdb, run_sql

    if lake:
        result = Lake(lake).query(sql)
    else:
        con = connect_duckdb()
        try:
            result = run_sql(con, sql)
        finally:
            con.close()
    if out is not None:
        write_table(result.frame, out)
        rows, _, scanned = result.describe().partition("; ")
        typer.echo(f"wrote {rows} to {out}" + (f" ({scanned})" if scanned else ""))
        return
    with pd.option_context("display.max_columns", 50, "display.width", 160, "display.max_colwidth", 60):
        if len(result.frame.columns):
            typer.echo(result.frame.head(limit).to_string(index=False))
    typer.echo(f"({result.describe()})")


def datasets(lake: LakeOption = None) -> None:
    """List the datasets of the lake's catalog."""
    from training.lake import Lake, LakeError

    if not lake:
        raise LakeError("datasets needs --lake DIR_OR_S3_URI (or TRIPOD_LAKE)")
    entries = Lake(lake).datasets()
    if not entries:
        typer.echo(f"no datasets in {lake}")
    for entry in entries:
        parts = f" partitioned by {','.join(entry.partitions)}" if entry.partitions else ""
        typer.echo(
            f"{entry.name}\t{entry.rows} rows\t{len(entry.schema)} columns\t{entry.files} files{parts}\t"
            f"created {entry.created_at}"
        )


def explore(
    target: Annotated[str, typer.Option(help="label (or regression target) column")],
    data: DataOption = None,
    lake: LakeOption = None,
    dataset: DatasetOption = None,
    sql: SqlOption = None,
    out: Annotated[Path, typer.Option(help="report folder: exploration.html, .json, .ipynb")] = Path(
        "reports/exploration"
    ),
    text_columns: Annotated[
        str | None, typer.Option(help="comma-separated free-text columns (default: inferred)")
    ] = None,
    sample_rows: Annotated[
        int, typer.Option(min=100, help="rows used by n-grams, anomalies, prediction power")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="seed of samples and models")] = 42,
    execute: Annotated[bool, typer.Option(help="also execute the notebook (needs ipykernel)")] = False,
) -> None:
    """Exploration report: target, sample, columns, duplicates, text, correlations, anomalies, leaks."""
    from training.explore import ExploreSettings, execute_notebook, write_exploration
    from training.explore import explore as run_explore

    spec = input_spec(data, lake, dataset, sql)
    frame = _load(spec)
    columns = tuple(_split([text_columns])) if text_columns else None
    settings = ExploreSettings(target=target, text_columns=columns, sample_rows=sample_rows, seed=seed)
    result = run_explore(frame, settings, progress=True)
    notebook_spec = spec.as_dict()
    if spec.data and "://" not in spec.data:
        notebook_spec["data"] = str(Path(spec.data).absolute())
    if notebook_spec.get("lake") and "://" not in notebook_spec["lake"]:
        notebook_spec["lake"] = str(Path(notebook_spec["lake"]).absolute())
    leaks, warnings = result.summary["leakage_warnings"], result.summary["warnings"]
    paths = write_exploration(result, out, spec=notebook_spec, settings=settings)
    if execute:
        execute_notebook(paths["notebook"])
    for line in leaks:
        typer.echo(f"warning: {line}")
    typer.echo(
        f"wrote {paths['html']}, {paths['json'].name} and {paths['notebook'].name} "
        f"({len(frame)} rows, {len(leaks)} leak warning(s), {len(warnings)} other warning(s))"
    )


def bias(
    ctx: typer.Context,
    label: Annotated[str, typer.Option(help="label column")],
    facet: Annotated[
        list[str],
        typer.Option(help="facet column; repeat for more. --facet-value / --threshold after it apply to it"),
    ],
    data: DataOption = None,
    lake: LakeOption = None,
    dataset: DatasetOption = None,
    sql: SqlOption = None,
    positive_label: Annotated[
        list[str] | None, typer.Option(help="label value(s) that count as positive; repeat for several")
    ] = None,
    label_threshold: Annotated[
        float | None, typer.Option(help="numeric label: positive means above this")
    ] = None,
    facet_value: Annotated[
        list[str] | None,
        typer.Option(help="sensitive value(s) of the facet before it (default: each value against the rest)"),
    ] = None,
    threshold: Annotated[
        list[float] | None, typer.Option(help="numeric facet before it: facet d is the rows above this")
    ] = None,
    group_variable: Annotated[
        str | None, typer.Option(help="column whose groups condition CDDL/CDDPL")
    ] = None,
    predictions: Annotated[
        str | None, typer.Option(help="column of predicted labels (post-training)")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="model directory to predict with (post-training)")
    ] = None,
    methods: Annotated[str | None, typer.Option(help="comma-separated metric names (default: all)")] = None,
    out: Annotated[Path, typer.Option(help="report folder: analysis.json and report.html")] = Path(
        "reports/bias"
    ),
) -> None:
    """Pre-training (and with --predictions or --model, post-training) bias metrics, as SageMaker Clarify."""
    from training.bias import BiasError, LabelSpec, bias_analysis, predict_with_model, write_bias_report

    del facet_value, threshold  # read in order from the raw arguments, below
    facets = facet_specs(ctx.meta.get("tripod.raw_args", []))
    if not facets:
        facets = facet_specs([token for name in facet for token in ("--facet", name)])
    if predictions and model:
        raise BiasError("give --predictions COLUMN or --model DIR, not both")
    spec = input_spec(data, lake, dataset, sql)
    label_spec = LabelSpec(label, tuple(_split(positive_label)), label_threshold)
    frame = _load(spec)
    predicted = None
    source = ""
    if predictions:
        from training.data import require_columns

        require_columns(frame, [predictions])
        predicted, source = frame[predictions], f"column {predictions!r}"
    elif model:
        predicted, source = predict_with_model(frame, model), f"model {model}"
    analysis = bias_analysis(
        frame,
        label_spec,
        facets,
        group_variable=group_variable,
        predictions=predicted,
        prediction_source=source,
        methods=_split([methods]) if methods else None,
        progress=True,
    )
    json_path, html_path = write_bias_report(analysis, out)
    for warning in analysis["details"]["warnings"]:
        typer.echo(f"warning: {warning}")
    stages = "pre- and post-training" if "post_training_bias_metrics" in analysis else "pre-training"
    groups = sum(len(v) for v in analysis["pre_training_bias_metrics"]["facets"].values())
    typer.echo(
        f"wrote {json_path} and {html_path.name}: {stages} metrics for {len(facets)} facet(s), "
        f"{groups} group(s)"
    )


def balance(
    ctx: typer.Context,
    label: Annotated[str, typer.Option(help="label column")],
    out: Annotated[Path, typer.Option(help="balanced table to write (.parquet or .csv)")],
    data: DataOption = None,
    lake: LakeOption = None,
    dataset: DatasetOption = None,
    sql: SqlOption = None,
    by: Annotated[
        str, typer.Option(help="class | facet-class: what to down-sample to equal counts")
    ] = "class",
    facet: Annotated[
        list[str] | None,
        typer.Option(help="facet column (needed by facet-class; metrics are shown for every facet)"),
    ] = None,
    facet_value: Annotated[
        list[str] | None, typer.Option(help="sensitive value(s) of the facet before it")
    ] = None,
    threshold: Annotated[
        list[float] | None, typer.Option(help="numeric facet before it: split above this")
    ] = None,
    positive_label: Annotated[
        list[str] | None, typer.Option(help="positive label value(s), for the before/after bias metrics")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="folder for balance.json and balance.html")] = None,
    seed: Annotated[int, typer.Option(help="seed of the down-sampling")] = 42,
) -> None:
    """Down-sample by class or by facet × class, and report the counts and bias metrics before and after."""
    from training.bias import (
        BiasError,
        LabelSpec,
        balance_report,
        render_balance_html,
    )
    from training.bias import (
        balance as run_balance,
    )
    from training.data import write_table
    from training.reports import write_html, write_json

    del facet_value, threshold
    strategy = BALANCE_BY.get(by)
    if strategy is None:
        raise BiasError(f"--by must be class or facet-class, not {by!r}")
    facets = facet_specs(ctx.meta.get("tripod.raw_args", []))
    if strategy == "facet-class" and len(facets) != 1:
        raise BiasError("--by facet-class needs exactly one --facet")
    spec = input_spec(data, lake, dataset, sql)
    frame = _load(spec)
    balanced, summary = run_balance(
        frame,
        label,
        by=strategy,
        facet=facets[0] if facets else None,
        seed=seed,
    )
    label_spec = LabelSpec(label, tuple(_split(positive_label))) if positive_label else None
    result = balance_report(frame, balanced, summary, label=label_spec, facets=facets)
    write_table(balanced, out)
    typer.echo(
        f"wrote {len(balanced)} of {len(frame)} rows to {out} ({summary['rows_per_cell']} per "
        f"{'class' if by == 'class' else 'facet × class cell'})"
    )
    if "pre_training_before" in result:
        for name, entries in result["pre_training_before"]["pre_training_bias_metrics"]["facets"].items():
            after = result["pre_training_after"]["pre_training_bias_metrics"]["facets"][name]
            for old, new in zip(entries, after, strict=True):
                pairs = {m["name"]: m["value"] for m in old["metrics"]}
                later = {m["name"]: m["value"] for m in new["metrics"]}
                shown = ", ".join(f"{k} {_fmt(pairs.get(k))} → {_fmt(later.get(k))}" for k in ("CI", "DPL"))
                typer.echo(f"  {name}={old['value_or_threshold']}: {shown}")
    if report is not None:
        write_json(report / "balance.json", result)
        write_html(report / "balance.html", render_balance_html(result))
        typer.echo(f"wrote {report / 'balance.json'} and balance.html")


def explain(
    model: Annotated[Path, typer.Option(help="model directory (or its latest link)")],
    data: DataOption = None,
    lake: LakeOption = None,
    dataset: DatasetOption = None,
    sql: SqlOption = None,
    sample: Annotated[
        int | None,
        typer.Option(min=1, help="rows to explain (default: every row for a linear model, 100 otherwise)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the row sample")] = 42,
    max_evals: Annotated[
        int, typer.Option(min=16, help="model evaluations per row (the model-agnostic explainer)")
    ] = 256,
    out: Annotated[Path, typer.Option(help="report folder: explanations.json and explanations.html")] = Path(
        "reports/explanations"
    ),
) -> None:
    """Global SHAP report: mean |SHAP| per feature and class, the words pushing each class, highlighted
    examples (exact for linear models, shap's partition explainer over the words of a text otherwise)."""
    from training.explain.report import write_explanations
    from training.explain.run import ExplainSettings, explain_model
    from training.explain.sources import model_from_directory

    spec = input_spec(data, lake, dataset, sql)
    explained = model_from_directory(model)  # a broken model fails before the table is read
    frame = _load(spec)
    settings = ExplainSettings(sample=sample, seed=seed, max_evals=max_evals, progress=True)
    explanation = explain_model(explained, frame, settings, source=spec.describe())
    json_path, html_path = write_explanations(explanation, out)
    summary = explanation.summary
    typer.echo(
        f"wrote {json_path} and {html_path.name}: {summary['data']['explained_rows']} of {len(frame)} rows "
        f"explained by the {summary['method']['name']} explainer in {summary['timing']['explain_seconds']:.1f} s"
    )


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def register_data_commands(app: typer.Typer) -> None:
    """Add the data commands to the ``tripod`` app."""
    app.command("ingest")(ingest)
    app.command("query")(query)
    app.command("datasets")(datasets)
    app.command("explore")(explore)
    app.command("bias", cls=OrderedOptionsCommand)(bias)
    app.command("balance", cls=OrderedOptionsCommand)(balance)
    app.command("explain")(explain)
