"""Load, prepare, split and fingerprint tabular training data.

Everything here is a small pure function over a :class:`pandas.DataFrame`, so the CLI verbs (``tripod prepare``,
``tripod train``) stay thin and the behaviour can be tested without them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from training.errors import DataError

logger = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
SENTIMENT_BY_RATING = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}

# pandas names a header cell that is empty "Unnamed: <position>"; such a column is a saved row index.
_UNNAMED = re.compile(r"^Unnamed: \d+$")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (*CSV_SUFFIXES[::-1], *PARQUET_SUFFIXES):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def load_table(path: Path | str) -> pd.DataFrame:
    """Read a CSV (optionally gzipped) or Parquet file into a DataFrame.

    The format comes from the file name, so a wrong guess fails loudly instead of producing one column of
    garbage.  CSV must be UTF-8; quoted fields may contain newlines and carriage returns.

    Args:
        path: A ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.

    Returns:
        The table as read, columns unchanged (a CSV's unnamed index column appears as ``Unnamed: 0``).

    Raises:
        DataError: The file is missing, empty, not UTF-8, unreadable, or has an unsupported extension.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = _suffix(path)
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        supported = ", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)
        raise DataError(f"unsupported file type {suffix or '(none)'!r} for {path}; use one of {supported}")
    if path.stat().st_size == 0:
        raise DataError(f"data file is empty: {path}")
    try:
        if suffix in PARQUET_SUFFIXES:
            return pd.read_parquet(path)
        return pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); re-save it as UTF-8"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data file is empty: {path}") from exc
    except (pd.errors.ParserError, gzip.BadGzipFile, EOFError, OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def write_table(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write a DataFrame as Parquet or CSV (optionally gzipped), chosen by the file name."""
    path = Path(path)
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in PARQUET_SUFFIXES:
        frame.to_parquet(path, index=False)
    elif suffix in CSV_SUFFIXES:
        # Quote every string: pandas' reader ends a row at a bare "\r", which review texts contain.
        frame.to_csv(path, index=False, encoding="utf-8", quoting=csv.QUOTE_NONNUMERIC)
    else:
        supported = ", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)
        raise DataError(f"unsupported output type {suffix or '(none)'!r} for {path}; use one of {supported}")
    return path


def require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Fail with the list of available columns, so a typo is fixed in one attempt."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        available = ", ".join(repr(str(column)) for column in frame.columns)
        raise DataError(
            f"column(s) {', '.join(map(repr, missing))} not found; available columns: {available}"
        )


def snake_case(name: str) -> str:
    """``"Clothing ID"`` → ``"clothing_id"``, ``"PositiveFeedback"`` → ``"positive_feedback"``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name).strip())
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def prepare_reviews(
    frame: pd.DataFrame,
    *,
    rating_column: str = "Rating",
    text_column: str = "Review Text",
    label_column: str = "sentiment",
    text_out: str = "review_body",
) -> pd.DataFrame:
    """Turn a star-rated review table into a three-class sentiment table.

    Ratings 1–2 become ``"negative"``, 3 ``"neutral"`` and 4–5 ``"positive"``.  Rows whose text is missing or
    blank are dropped, since a model cannot learn sentiment from nothing.  The text column is renamed to
    ``text_out``, every other column to snake_case (a saved row index column is dropped), and the label is
    appended as ``label_column``; the rating itself is kept so the mapping can be audited.

    Args:
        frame: The raw table, e.g. from :func:`load_table`.
        rating_column: Integer star ratings from 1 to 5.
        text_column: Free review text.
        label_column: Name of the new sentiment column.
        text_out: New name of the text column.

    Returns:
        A new DataFrame with a fresh ``RangeIndex``.

    Raises:
        DataError: A named column is absent, a rating is outside 1–5, or two columns collide after renaming.
    """
    require_columns(frame, [rating_column, text_column])
    frame = frame.drop(columns=[c for c in frame.columns if _UNNAMED.match(str(c))])

    text = frame[text_column]
    keep = text.notna() & (text.astype(object).where(text.notna(), "").astype(str).str.strip() != "")
    dropped = int((~keep).sum())
    frame = frame.loc[keep]

    ratings = pd.to_numeric(frame[rating_column], errors="coerce")
    unknown = ~ratings.isin(list(SENTIMENT_BY_RATING))
    if unknown.any():
        examples = frame.loc[unknown, rating_column].head(5).tolist()
        raise DataError(
            f"column {rating_column!r} must hold ratings 1–5; found {int(unknown.sum())} other value(s), "
            f"e.g. {examples}"
        )

    renames = {c: (text_out if c == text_column else snake_case(c)) for c in frame.columns}
    names = [*renames.values(), label_column]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"columns collide after renaming to snake_case: {', '.join(duplicates)}")

    prepared = frame.rename(columns=renames)
    prepared[label_column] = ratings.astype(int).map(SENTIMENT_BY_RATING).to_numpy(dtype=object)
    logger.info("prepared %d rows (%d dropped for missing or blank text)", len(prepared), dropped)
    return prepared.reset_index(drop=True)


def run_prepare(
    raw: Path | str,
    out: Path | str,
    *,
    rating_column: str = "Rating",
    text_column: str = "Review Text",
    label_column: str = "sentiment",
    text_out: str = "review_body",
) -> int:
    """``tripod prepare``: read a raw review table, prepare it, write Parquet or CSV by ``out``'s extension.

    Returns:
        The number of rows written.
    """
    prepared = prepare_reviews(
        load_table(raw),
        rating_column=rating_column,
        text_column=text_column,
        label_column=label_column,
        text_out=text_out,
    )
    write_table(prepared, out)
    return len(prepared)


@dataclass(frozen=True)
class Split:
    """Disjoint train / validation / test frames; each keeps the original row labels for traceability.

    ``selection`` (AutoML only, else empty) is held out from everything the candidates are tuned on — their fit,
    early stopping, pruning and the search's objective all use ``validation`` — so the choice of the best
    candidate and the ensemble's weights are made on rows no candidate has seen."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    selection: pd.DataFrame = field(default_factory=pd.DataFrame)


def _stratified(
    frame: pd.DataFrame, target: str, size: float, seed: int, stratify: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        rest, part = train_test_split(
            frame, test_size=size, random_state=seed, stratify=frame[target] if stratify else None
        )
    except ValueError as exc:
        counts = frame[target].value_counts().to_dict()
        raise DataError(
            f"cannot split {len(frame)} rows stratified by {target!r} (class counts {counts}): {exc}"
        ) from exc
    return rest, part


def split_frame(
    frame: pd.DataFrame,
    target: str,
    *,
    seed: int = 42,
    validation: float = 0.1,
    test: float = 0.1,
    stratify: bool = True,
    selection: float = 0.0,
) -> Split:
    """Split rows into train / validation / test, stratified by ``target`` and fully determined by ``seed``.

    Stratifying keeps rare classes (here "neutral", ~12 %) represented in the small held-out sets, so their
    metrics and the export parity check see them.

    Args:
        frame: The prepared table.
        target: The label column to stratify on.
        seed: Seed of the shuffles; the same seed and data always give the same rows.
        validation: Fraction of all rows for validation (may be 0).
        test: Fraction of all rows for test.
        selection: Fraction of all rows for the selection split (AutoML), taken from the training rows.
        stratify: False for regression targets, whose values are not classes.

    Raises:
        DataError: Bad fractions, a missing target column, or a class too small to stratify.
    """
    require_columns(frame, [target])
    if not (
        0 < test < 1 and 0 <= validation < 1 and 0 <= selection < 1 and validation + test + selection < 1
    ):
        raise DataError(
            "need 0 < test, 0 <= validation, 0 <= selection and validation + test + selection < 1; "
            f"got {validation=}, {test=}, {selection=}"
        )
    rest, test_frame = _stratified(frame, target, test, seed, stratify)
    selection_frame = rest.iloc[:0]
    if selection > 0:
        rest, selection_frame = _stratified(rest, target, selection / (1 - test), seed, stratify)
    if validation == 0:
        return Split(train=rest, validation=rest.iloc[:0], test=test_frame, selection=selection_frame)
    train, validation_frame = _stratified(rest, target, validation / (1 - test - selection), seed, stratify)
    return Split(train=train, validation=validation_frame, test=test_frame, selection=selection_frame)


def stratified_sample(frame: pd.DataFrame, target: str, n: int, *, seed: int = 42) -> pd.DataFrame:
    """``n`` rows with the class proportions of ``frame``; the whole frame when ``n`` is not smaller."""
    if n >= len(frame):
        return frame
    if n <= 0:
        raise DataError(f"sample size must be positive, got {n}")
    _, sample = _stratified(frame, target, n, seed)
    return sample


def _canonical(value: object) -> object:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars → Python scalars, so int64(3) and 3 serialize alike
        value = value.item()
    if isinstance(value, float):
        return repr(
            value
        )  # shortest round-trip text: stable across platforms, distinguishes 0.1 from 0.1000001
    if isinstance(value, (str, int, bool)):
        return value
    return str(value)


def fingerprint(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """A sha256 that identifies the data a model was trained on.

    The digest covers, in this order, each column's name and dtype (as ``str(dtype)``) and then its values in
    row order, serialized as JSON with missing values as ``null`` and floats by their shortest round-trip
    text.  Row-index labels are ignored, so re-indexing or reading the same file twice gives the same digest;
    reordering rows, changing a value, a dtype or a column name changes it.  Dtype names can change between
    pandas versions (``object`` vs ``str``), so compare fingerprints made with the same pandas.

    Args:
        frame: The table.
        columns: The columns that matter (e.g. the model's inputs and target), hashed in the order given.

    Returns:
        ``"sha256:<hex>"``.
    """
    require_columns(frame, columns)
    digest = hashlib.sha256()
    header = [[str(column), str(frame[column].dtype)] for column in columns]
    digest.update(json.dumps({"rows": len(frame), "columns": header}).encode("utf-8"))
    for column in columns:
        values = [_canonical(v) for v in frame[column].tolist()]
        digest.update(b"\n")
        digest.update(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return f"sha256:{digest.hexdigest()}"
