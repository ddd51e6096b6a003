"""API key commands of the ``tripod`` CLI: ``tripod keys create|list|revoke --file KEYS``.

``create`` makes a random token, prints it once on stdout (the only time it exists outside the caller) and adds
its SHA-256 to the keys file; the server re-reads the file within a second (``services/http/auth.py``).  The file
is written atomically, readable by its owner only.  Mistakes are one line on stderr and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.errors import TripodError

if TYPE_CHECKING:
    from services.http.auth import KeyEntry

keys_app = typer.Typer(
    name="keys", help="Manage the API keys file a server reads (--auth-keys).", no_args_is_help=True
)

FileOption = Annotated[
    Path,
    typer.Option("--file", envvar="TRIPOD_AUTH_KEYS", help="the keys file (YAML, or JSON by its suffix)"),
]
NameOption = Annotated[str, typer.Option("--name", help="the key's name, logged with its requests")]


def _existing(path: Path) -> list[KeyEntry]:
    from services.http.auth import read_keys

    return list(read_keys(path).keys) if path.exists() else []


@keys_app.command("create")
def create(
    file: FileOption,
    name: NameOption,
    scope: Annotated[
        list[str], typer.Option("--scope", help="predict, admin or metrics; repeat for several")
    ],
    rate: Annotated[float | None, typer.Option(min=0.001, help="requests per second per worker")] = None,
    burst: Annotated[
        float | None, typer.Option(min=1, help="bucket size (default: one second of rate)")
    ] = None,
) -> None:
    """Add a key and print its token (once)."""
    from pydantic import ValidationError

    from services.http.auth import KeyEntry, new_token, token_digest, write_keys

    keys = _existing(file)
    if any(key.name == name for key in keys):
        raise TripodError(f"keys file {file}: a key named {name!r} exists (revoke it first)")
    token = new_token()
    try:
        entry = KeyEntry(name=name, sha256=token_digest(token), scopes=tuple(scope), rate=rate, burst=burst)
    except ValidationError as exc:
        raise TripodError(f"key {name!r}: {exc.errors()[0]['msg']}") from exc
    write_keys(file, [*keys, entry])
    typer.echo(token)


@keys_app.command("list")
def list_keys(file: FileOption) -> None:
    """Names, scopes and rates (never the digests' tokens: the file has none)."""
    for key in _existing(file):
        limit = "" if key.rate is None else f" rate={key.rate:g}/s burst={key.burst or max(1.0, key.rate):g}"
        typer.echo(f"{key.name}\t{','.join(key.scopes)}{limit}")


@keys_app.command("revoke")
def revoke(file: FileOption, name: NameOption) -> None:
    """Remove a key; servers refuse its token within a second."""
    from services.http.auth import write_keys

    keys = _existing(file)
    kept = [key for key in keys if key.name != name]
    if len(kept) == len(keys):
        raise TripodError(f"keys file {file}: no key named {name!r}")
    write_keys(file, kept)
    typer.echo(f"revoked {name}")


def register_keys_commands(app: typer.Typer) -> None:
    """Add the ``keys`` command group to the ``tripod`` app."""
    app.add_typer(keys_app)
