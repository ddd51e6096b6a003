"""What a transform job remembers in its output location, so that the same command resumes it.

Under ``<output>/.tripod/``:

- ``done/<relative>.json`` — an input object finished (its ``.out`` written), or ``done/<relative>.part-…json``
  for one byte range of a split object; each marker records the job's fingerprint, the input's size and version
  (S3 ETag, or mtime and size), records, errors, seconds, the output's sha256, and ``ok`` or the failure;
- ``parts/<relative>.part-….out`` (and ``.errors.jsonl``) — the outputs of the ranges of a split object, joined
  into ``<relative>.out`` by whichever shard finishes the last range, then removed;
- ``summary.json`` (``summary-<i>-of-<n>.json`` for shard ``i``) — the job's summary.

A unit is skipped when its marker is ``ok``, has this job's fingerprint and the input's current version, and its
output is there; anything else — a kill in the middle, a failure, a changed input or options — is done again.
Outputs are written atomically and the work is deterministic, so a resumed job's outputs are byte-identical to
an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from services.batch import storage
from services.batch.plan import WorkUnit
from services.errors import StorageError

STATE_DIR = ".tripod"
OUT_SUFFIX = ".out"
ERRORS_SUFFIX = ".out.errors.jsonl"


@dataclass
class UnitMarker:
    """What is known of a finished (or failed) work unit."""

    fingerprint: str
    version: str
    size: int
    records: int
    errors: int
    seconds: float
    ok: bool
    reason: str = ""
    output_sha256: str = ""
    start: int = 0
    end: int | None = None
    error_entries: list[dict[str, Any]] = field(default_factory=list)

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()


def fingerprint(settings: dict[str, Any]) -> str:
    """A digest of everything that decides a job's outputs (the model's identity, the options that change bytes)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:32]


def state_url(output: str, *names: str) -> str:
    return storage.output_url(output, "/".join((STATE_DIR, *names)), suffix="")


def marker_url(output: str, unit: WorkUnit) -> str:
    return state_url(output, "done", unit.name + ".json")


def file_marker_url(output: str, relative: str) -> str:
    return state_url(output, "done", relative + ".json")


def unit_output_url(output: str, unit: WorkUnit) -> str:
    """Where a unit writes its answers: the final ``.out`` for a whole object, a part file for a range."""
    if unit.parts == 1:
        return storage.output_url(output, unit.input.relative, OUT_SUFFIX)
    return state_url(output, "parts", unit.name + OUT_SUFFIX)


def read_marker(url: str) -> UnitMarker | None:
    """A marker, or None when absent or unreadable (a unit half-recorded is a unit to do again)."""
    try:
        if not storage.exists(url):
            return None
        return UnitMarker(**json.loads(storage.read_bytes(url)))
    except (ValueError, TypeError):
        return None


def done_marker(output: str, unit: WorkUnit, job_fingerprint: str) -> UnitMarker | None:
    """The marker showing a previous run did this unit (see the module docstring), or None.

    For a range of a split object already assembled it is the object's own marker (``start`` 0, ``end`` None),
    whose counts cover every range.
    """
    whole = read_marker(file_marker_url(output, unit.input.relative))
    final = storage.output_url(output, unit.input.relative, OUT_SUFFIX)
    if whole is not None and _current(whole, unit, job_fingerprint) and unit.parts > 1:
        return whole if whole.ok and storage.exists(final) else None
    marker = read_marker(marker_url(output, unit))
    if (
        marker is not None
        and marker.ok
        and _current(marker, unit, job_fingerprint)
        and storage.exists(unit_output_url(output, unit))
    ):
        return marker
    return None


def _current(marker: UnitMarker, unit: WorkUnit, job_fingerprint: str) -> bool:
    return marker.fingerprint == job_fingerprint and marker.version == unit.input.version


def sha256_of(url: str) -> str:
    digest = hashlib.sha256()
    with storage.open_input(storage.InputObject(url=url, relative="", size=0, version="")) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def try_assemble(output: str, units: list[WorkUnit], job_fingerprint: str) -> str | None:
    """Join the part outputs of a split object into its ``.out`` once every part is done.

    Args:
        units: every unit of one object, in order.

    Returns:
        None while parts are missing; "" once assembled (or already); the failure reason when a part failed.
    """
    first = units[0]
    relative = first.input.relative
    final = storage.output_url(output, relative, OUT_SUFFIX)
    whole = read_marker(file_marker_url(output, relative))
    if whole is not None and whole.ok and _current(whole, first, job_fingerprint) and storage.exists(final):
        return ""
    markers = [read_marker(marker_url(output, unit)) for unit in units]
    if any(
        m is None or not _current(m, unit, job_fingerprint) for m, unit in zip(markers, units, strict=True)
    ):
        return None
    done = [m for m in markers if m is not None]
    if any(not m.ok for m in done):
        return "; ".join(f"part {i}: {m.reason}" for i, m in enumerate(done) if not m.ok)
    if not all(storage.exists(unit_output_url(output, unit)) for unit in units):
        return None
    try:
        with storage.AtomicWriter(final) as writer:
            for unit in units:
                with storage.open_input(
                    storage.InputObject(unit_output_url(output, unit), "", 0, "")
                ) as part:
                    while chunk := part.read(1 << 20):
                        writer.write(chunk)
    except StorageError:
        # Two shards finishing the last ranges together both assemble; the first removes the parts under the
        # second, whose work is then already done.
        whole = read_marker(file_marker_url(output, relative))
        if whole is not None and whole.ok and _current(whole, first, job_fingerprint):
            return ""
        raise
    entries, before = [], 0
    for marker in done:
        for entry in marker.error_entries:
            entries.append({**entry, "record": entry["record"] + before})
        before += marker.records
    write_errors(storage.output_url(output, relative, ERRORS_SUFFIX), entries)
    summary = UnitMarker(
        fingerprint=job_fingerprint,
        version=first.input.version,
        size=first.input.size,
        records=before,
        errors=len(entries),
        seconds=sum(m.seconds for m in done),
        ok=True,
        output_sha256=sha256_of(final),
    )
    storage.write_bytes(file_marker_url(output, relative), summary.dumps())
    for unit in units:
        storage.remove(unit_output_url(output, unit))
    return ""


def write_errors(url: str, entries: list[dict[str, Any]]) -> None:
    """The bad records of an object as JSON Lines; no file (and any old one removed) when there are none."""
    if not entries:
        storage.remove(url)
        return
    storage.write_bytes(
        url, b"".join(json.dumps(entry, sort_keys=True).encode() + b"\n" for entry in entries)
    )
