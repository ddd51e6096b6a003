"""Model commands of the ``tripod`` CLI: delivery (``tripod models pull SRC DEST``, ``tripod models verify DIR``)
and the lifecycle of a registry's versions (``list``, ``show``, ``promote``, ``rollback``).

Thin typed entry points over :mod:`services.delivery` and :mod:`services.registry`; a model that does not verify,
an unknown name or version, is one line on stderr and exit status 2 (the ``tripod`` entry point turns the error
into that).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from services.artifacts import Manifest
    from services.registry import HistoryEntry, ModelDetail, ModelInfo, Move

models_app = typer.Typer(
    name="models",
    help="Deliver model directories (pull, verify) and manage a registry's versions (list, show, promote, rollback).",
    no_args_is_help=True,
)

_MiB = 1 << 20
_HISTORY_SHOWN = 20

RegistryOption = Annotated[
    str,
    typer.Option(
        "--registry",
        envvar="TRIPOD_REGISTRY",
        help="the registry: a directory holding <name>/v<N>/ and <name>/latest (e.g. models), or s3://bucket/prefix",
    ),
]
NameOption = Annotated[str, typer.Option("--name", help="the model's name (its folder in the registry)")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="why, recorded in the history")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


@models_app.command()
def pull(
    src: Annotated[
        str,
        typer.Argument(
            metavar="SRC", help="model directory: s3://bucket/prefix/v3, a local path or its latest link"
        ),
    ],
    dest: Annotated[
        Path,
        typer.Argument(metavar="DEST", help="where the server reads it, e.g. /models/current (a symlink)"),
    ],
) -> None:
    """Copy a model directory to DEST, verified by its digests.

    The model appears at DEST atomically (DEST becomes a symlink to a verified directory beside it); a DEST
    that already holds the same model is left alone, and on any error DEST is left as it was."""
    from services.delivery import pull_model

    summary = pull_model(src, dest)
    manifest, short = summary.manifest, summary.manifest_digest[:12]
    if summary.unchanged:
        typer.echo(
            f"{manifest.name} {manifest.version} is already at {dest}, manifest sha256 {short}: nothing to pull"
        )
        return
    typer.echo(
        f"pulled {manifest.name} {manifest.version} ({summary.files} files, {summary.mib:.1f} MiB) "
        f"from {src} to {dest}, manifest sha256 {short}"
    )


@models_app.command()
def verify(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="model directory (or a link to one)")],
) -> None:
    """Verify a model directory in place, as the server does at start.

    Checks the manifest against manifest.sha256, every file against its sha256, and the ONNX stages against
    the manifest."""
    from services.delivery import verify_model

    summary = verify_model(directory)
    manifest = summary.manifest
    typer.echo(
        f"verified {manifest.name} {manifest.version} at {summary.directory} ({summary.files} files, "
        f"{summary.mib:.1f} MiB), manifest sha256 {summary.manifest_digest[:12]}"
    )


@models_app.command("list")
def list_models(
    registry: RegistryOption,
    name: Annotated[str | None, typer.Option("--name", help="only this model")] = None,
    as_json: JsonOption = False,
) -> None:
    """List every model of a registry (or one) with its versions, and the one `latest` points at (*).

    Reads each version's manifest (checked against manifest.sha256); promote verifies every file."""
    from services.registry import Registry

    opened = Registry(registry)
    models = opened.models(name)
    if as_json:
        typer.echo(
            json.dumps({"registry": opened.root, "models": [model.as_json() for model in models]}, indent=2)
        )
    elif not models:
        typer.echo(f"no models in {opened.root}")
    else:
        typer.echo(format_models(models))


@models_app.command()
def show(
    registry: RegistryOption,
    name: NameOption,
    version: Annotated[str | None, typer.Option("--version", help="v3 (default: the current one)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show one version's manifest (by default the current one) and the model's history."""
    from services.registry import Registry, version_arg

    detail = Registry(registry).show(name, version_arg(version) if version is not None else None)
    if as_json:
        typer.echo(json.dumps(detail_json(detail), indent=2))
    else:
        typer.echo(format_detail(detail))


@models_app.command()
def promote(
    registry: RegistryOption,
    name: NameOption,
    version: Annotated[str, typer.Option("--version", help="the version to serve, e.g. v3")],
    reason: ReasonOption = None,
) -> None:
    """Verify a version completely, point `latest` at it atomically, and record it in the history.

    A version that does not verify is refused and `latest` stays where it was."""
    from services.registry import Registry, version_arg

    chosen = version_arg(version)
    move = Registry(registry).promote(name, chosen, reason=reason)
    if move is None:
        typer.echo(f"{name} {chosen} is already the current version: nothing to promote")
        return
    typer.echo(describe_move(name, move))


@models_app.command()
def rollback(
    registry: RegistryOption,
    name: NameOption,
    to: Annotated[
        str | None,
        typer.Option("--to", help="the version to go back to (default: the one before the current)"),
    ] = None,
    reason: ReasonOption = None,
) -> None:
    """Point `latest` back at the version before the current one (or --to), verified first; record it.

    The version before is the one the last promotion to the current version came from (history.jsonl), or, when
    none led to it (tripod train published it), the newest older version."""
    from services.registry import Registry, version_arg

    move = Registry(registry).rollback(name, to=version_arg(to) if to is not None else None, reason=reason)
    typer.echo(describe_move(name, move))


# --- what the lifecycle commands print ------------------------------------------------------------------------


def format_models(models: list[ModelInfo]) -> str:
    """One table row per version: ``*`` marks the one `latest` points at."""
    rows = [["NAME", "VERSION", "LATEST", "CREATED", "FAMILY", "METRICS", "PARITY", "EXPLAINER", "SIZE"]]
    for model in models:
        for info in model.versions:
            manifest = info.manifest
            if manifest is None:
                rows.append(
                    [model.name, info.version, _mark(info.current), "-", "-", f"unreadable: {info.problem}"]
                )
                continue
            rows.append(
                [
                    model.name,
                    info.version,
                    _mark(info.current),
                    manifest.created_at,
                    manifest.candidate.family,
                    " ".join(f"{metric}={value:.4f}" for metric, value in info.key_metrics.items()) or "-",
                    "passed" if manifest.parity.passed else "FAILED",
                    "yes" if manifest.explainer is not None else "no",
                    f"{(info.size or 0) / _MiB:.1f} MiB",
                ]
            )
        if model.current is not None and model.current not in {info.version for info in model.versions}:
            rows.append([model.name, model.current, "*", "-", "-", "latest names a version that is not here"])
    return "\n".join(_aligned(rows))


def _mark(current: bool) -> str:
    return "*" if current else ""


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows if column < len(row)) for column in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in rows
    ]


def format_detail(detail: ModelDetail) -> str:
    """The manifest's summary, then the history (its last entries)."""
    manifest, info = detail.manifest, detail.info
    stages = [
        f"{stage} {spec.file}: {', '.join(t.name for t in spec.inputs)} -> {', '.join(t.name for t in spec.outputs)}"
        for stage, spec in manifest.stages.items()
    ]
    lines = [
        f"{detail.name} {info.version}{' (current)' if info.current else ''} at {detail.location}",
        f"created      {manifest.created_at}",
        f"problem      {manifest.problem_type}, target {manifest.target}",
        f"inputs       {', '.join(f'{c.name} ({c.dtype}, {c.role})' for c in manifest.inputs)}",
        f"labels       {', '.join(manifest.labels) if manifest.labels else '- (regression)'}",
        f"stages       {stages[0]}",
        *(f"             {stage}" for stage in stages[1:]),
        *_wrapped("metrics", [f"{metric} {value:.4f}" for metric, value in manifest.metrics.items()]),
        f"parity       {_parity(manifest)}",
        f"explainer    {_explainer(detail)}",
        f"data         {manifest.data_fingerprint}",
        f"candidate    {manifest.candidate.family} {json.dumps(manifest.candidate.params, sort_keys=True)}",
        f"libraries    {', '.join(f'{library} {version}' for library, version in sorted(manifest.libraries.items()))}",
        f"manifest     sha256 {info.manifest_digest}, {info.files} files, {(info.size or 0) / _MiB:.1f} MiB",
    ]
    history = detail.history
    if not history:
        lines.append("history      none")
    else:
        earlier = len(history) - _HISTORY_SHOWN
        lines.append(f"history      {f'({earlier} earlier entries)' if earlier > 0 else ''}".rstrip())
        lines.extend(f"  {describe_entry(entry)}" for entry in history[-_HISTORY_SHOWN:])
    return "\n".join(lines)


def _wrapped(label: str, items: list[str], per_line: int = 4) -> list[str]:
    """``label`` and the items, a few per line (a model may record dozens of metrics)."""
    chunks = [", ".join(items[start : start + per_line]) for start in range(0, len(items), per_line)] or ["-"]
    return [f"{label if number == 0 else '':<12} {chunk}" for number, chunk in enumerate(chunks)]


def _parity(manifest: Manifest) -> str:
    parity = manifest.parity
    return (
        f"{'passed' if parity.passed else 'FAILED'}: {parity.rows} rows, agreement {parity.label_agreement:.4f} "
        f"(min {parity.min_label_agreement}), max |Δ| {parity.max_abs_probability_diff:.2e} "
        f"(tolerance {parity.max_probability_tolerance})"
    )


def _explainer(detail: ModelDetail) -> str:
    explainer = detail.manifest.explainer
    if explainer is None:
        return "none"
    check = explainer.check
    return (
        f"{explainer.method} ({explainer.stage.file}), check {'passed' if check.passed else 'FAILED'} on "
        f"{check.rows} rows: max |Δ| vs shap {check.max_abs_diff_vs_shap:.1e}, additivity "
        f"{check.max_additivity_error:.1e} (tolerance {check.tolerance:.0e})"
    )


def describe_entry(entry: HistoryEntry) -> str:
    why = f": {entry.reason}" if entry.reason else ""
    return f"{entry.time}  {entry.action} {entry.from_ or '(none)'} -> {entry.to} by {entry.who} on {entry.host}{why}"


def detail_json(detail: ModelDetail) -> dict[str, Any]:
    info = detail.info
    return {
        "name": detail.name,
        "version": info.version,
        "current": info.current,
        "location": detail.location,
        "manifest_sha256": info.manifest_digest,
        "files": info.files,
        "size": info.size,
        "manifest": detail.manifest.model_dump(mode="json"),
        "history": [entry.model_dump(mode="json", by_alias=True) for entry in detail.history],
    }


def describe_move(name: str, move: Move) -> str:
    entry, verified = move.entry, move.verified
    done = f"promoted {name} {entry.to}" if entry.action == "promote" else f"rolled {name} back to {entry.to}"
    return (
        f"{done} (was {entry.from_ or 'none'}): verified {verified.files} files, {verified.mib:.1f} MiB, "
        f"manifest sha256 {verified.manifest_digest[:12]}; recorded in {move.history}"
    )


def register_models_commands(app: typer.Typer) -> None:
    """Add the ``models`` command group to the ``tripod`` app."""
    app.add_typer(models_app)
