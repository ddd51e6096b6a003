"""Model delivery commands of the ``tripod`` CLI: ``tripod models pull SRC DEST`` and ``tripod models verify DIR``.

Thin typed entry points over :mod:`services.delivery`; a model that does not verify is one line on stderr and
exit status 2 (the ``tripod`` entry point turns the error into that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(
    name="models",
    help="Deliver model directories: pull one from object storage, verify one in place.",
    no_args_is_help=True,
)


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


def register_models_commands(app: typer.Typer) -> None:
    """Add the ``models`` command group to the ``tripod`` app."""
    app.add_typer(models_app)
