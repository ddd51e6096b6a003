"""Streaming statistics of a model's inputs and predictions, written in Model Monitor's ``statistics.json`` shape.

One :class:`Profile` serves both sides: ``monitor baseline`` feeds it the training table, ``monitor run`` the
captured records, so a baseline and a run are measured by the same code.  Memory is bounded whatever the
number of records: rows are buffered in blocks of :data:`FLUSH_ROWS` and reduced to counts, KLL quantile
sketches and HyperLogLog distinct counts (Apache DataSketches, the sketches Model Monitor itself uses), bin
counts for drift, and a fixed-size reservoir of texts for the domain-classifier test.

Per feature, as Model Monitor: ``inferred_type`` (``Integral``, ``Fractional``, ``String``; ``Unknown`` for
anything else), ``num_present``/``num_missing`` (None, NaN and absent count as missing), and
``numerical_statistics`` (mean, sum, std_dev, min, max, a 10-bucket KLL distribution) or
``string_statistics`` (distinct count, categorical buckets for categorical inputs).  Extensions, under their
own keys so Model Monitor's readers ignore them: ``bins`` (the baseline's decile edges or top categories,
and counts in them: what drift is measured on), ``data_types`` (values of each type) and, per text column,
``text_statistics`` (length in characters, tokens, out-of-vocabulary rate).  Predicted labels are counted
under ``predictions``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from datasketches import hll_sketch, kll_floats_sketch

from services.artifacts import InputColumn
from training.monitor.errors import MonitorError
from training.monitor.sample import Reservoir
from training.monitor.vocabulary import Vocabulary

KLL_K = 200
"""The KLL sketch's size parameter: rank error about 1.3 % (DataSketches' table), a few KB per sketch."""
HLL_LG_K = 12
"""HyperLogLog with 4,096 buckets: distinct counts within about 1.6 %."""
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
DRIFT_QUANTILES = tuple(q / 10 for q in range(1, 10))
"""Inner bin edges of numbers and text lengths: the baseline's deciles (the usual PSI binning)."""
FLUSH_ROWS = 4096
MAX_CATEGORIES = 50
"""Categories of a categorical input kept as bins (the rest are one "other" bin) and as domain."""
KLL_BUCKETS = 10
"""Model Monitor materializes distributions in 10 buckets."""
STRING, INTEGRAL, FRACTIONAL, UNKNOWN = "String", "Integral", "Fractional", "Unknown"
NUMBER_TYPES = frozenset({INTEGRAL, FRACTIONAL})
OTHER = "__other__"


@dataclass(frozen=True)
class Bins:
    """How values are binned for drift: quantile ``edges`` (a value ``v`` falls in the first bin whose edge is
    ``>= v``; the last bin is open), or ``categories`` (plus one bin for every other value)."""

    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.categories) + 1 if self.categories else len(self.edges) + 1

    @classmethod
    def quantiles(cls, values: np.ndarray) -> Bins:
        if not len(values):
            return cls()
        return cls(edges=tuple(float(e) for e in np.unique(np.quantile(values, DRIFT_QUANTILES))))

    @classmethod
    def top(cls, counts: Mapping[str, int]) -> Bins:
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_CATEGORIES]
        return cls(categories=tuple(value for value, _ in ranked))

    def counts(self, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """How many of ``values`` fall in each bin."""
        if self.categories:
            position = {value: i for i, value in enumerate(self.categories)}
            other = len(self.categories)
            index = np.fromiter((position.get(v, other) for v in values), dtype=np.int64, count=len(values))
        else:
            index = np.searchsorted(
                np.asarray(self.edges, dtype=np.float64), np.asarray(values, dtype=np.float64)
            )
        return np.bincount(index, minlength=self.size).astype(np.int64)

    def json(self, counts: np.ndarray) -> dict[str, Any]:
        if self.categories:
            return {"categories": list(self.categories), "counts": counts.tolist()}
        return {"edges": list(self.edges), "counts": counts.tolist()}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any] | None) -> Bins | None:
        if payload is None:
            return None
        try:
            if "categories" in payload:
                return cls(categories=tuple(str(v) for v in payload["categories"]))
            return cls(edges=tuple(float(v) for v in payload["edges"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorError(f"the baseline's bins are not valid ({exc})") from exc


@dataclass
class Layout:
    """What a profile bins: per input, its value bins, and per text input, its length bins (from a baseline)."""

    values: dict[str, Bins] = field(default_factory=dict)
    lengths: dict[str, Bins] = field(default_factory=dict)


def value_type(value: object) -> str | None:
    """Model Monitor's type of one value; None for a missing one (None or NaN)."""
    kind = type(value)
    if kind is str:
        return STRING
    if value is None:
        return None
    if kind is bool or isinstance(value, bool | np.bool_):
        return UNKNOWN
    if isinstance(value, int | np.integer):
        return INTEGRAL
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        return INTEGRAL if number.is_integer() else FRACTIONAL
    return UNKNOWN


EXACT_LIMIT = 100_000
"""Values a column keeps exactly before it switches to the KLL sketch: below it, quantiles and buckets are exact
and the same every run (DataSketches' KLL compacts with unseeded coin flips, so two profiles of the same data
could differ by a few counts — a model's own baseline must be byte-identical between identical trainings)."""


class _Numbers:
    """Count, sum, sum of squares, extremes and the distribution of a column's numbers: exact up to
    :data:`EXACT_LIMIT` values, a KLL sketch beyond."""

    def __init__(self) -> None:
        self.sketch: Any = None
        self.exact: list[np.ndarray] = []
        self.total = 0.0
        self.squares = 0.0
        self.count = 0

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        if self.sketch is None and self.count + len(values) > EXACT_LIMIT:
            self.sketch = kll_floats_sketch(KLL_K)
            for kept in self.exact:
                self.sketch.update(kept.astype(np.float32))
            self.exact = []
        if self.sketch is None:
            self.exact.append(np.asarray(values, dtype=np.float64))
        else:
            self.sketch.update(values.astype(np.float32))
        self.total += float(values.sum())
        self.squares += float(np.square(values).sum())
        self.count += len(values)

    def _sorted(self) -> np.ndarray:
        return np.sort(np.concatenate(self.exact))

    def json(self) -> dict[str, Any]:
        if not self.count:
            return {"mean": None, "sum": 0.0, "std_dev": None, "min": None, "max": None}
        mean = self.total / self.count
        variance = max(0.0, self.squares / self.count - mean * mean)
        if self.sketch is None:
            values = self._sorted()
            low, high, buckets = float(values[0]), float(values[-1]), exact_buckets(values)
        else:
            low, high = float(self.sketch.get_min_value()), float(self.sketch.get_max_value())
            buckets = kll_buckets(self.sketch)
        return {
            "mean": mean,
            "sum": self.total,
            "std_dev": math.sqrt(variance),
            "min": low,
            "max": high,
            "distribution": {"kll": {"buckets": buckets}},
        }

    def quantiles(self) -> dict[str, float | None]:
        if not self.count:
            return {f"p{round(q * 100):02d}": None for q in QUANTILES}
        if self.sketch is None:  # the value at each rank, as the sketch answers
            values = np.quantile(self._sorted(), list(QUANTILES), method="inverted_cdf")
        else:
            values = self.sketch.get_quantiles(list(QUANTILES))
        return {f"p{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, values, strict=True)}


def _bounds(low: float, high: float) -> np.ndarray:
    return np.linspace(low, high, KLL_BUCKETS + 1)


def exact_buckets(values: np.ndarray) -> list[dict[str, float]]:
    """:func:`kll_buckets` of sorted values counted exactly (each bucket holds values up to its upper bound)."""
    low, high, n = float(values[0]), float(values[-1]), len(values)
    if high <= low:
        return [{"lower_bound": low, "upper_bound": high, "count": float(n)}]
    bounds = _bounds(low, high)
    below = np.searchsorted(values, bounds[1:-1], side="right")
    counts = np.diff(np.concatenate([[0], below, [n]]))
    return [
        {"lower_bound": float(lo), "upper_bound": float(hi), "count": float(count)}
        for lo, hi, count in zip(bounds[:-1], bounds[1:], counts, strict=True)
    ]


def kll_buckets(sketch: Any) -> list[dict[str, float]]:
    """Model Monitor's 10 equal-width buckets between min and max, counts from the sketch."""
    low, high, n = float(sketch.get_min_value()), float(sketch.get_max_value()), sketch.n
    if high <= low:
        return [{"lower_bound": low, "upper_bound": high, "count": float(n)}]
    bounds = _bounds(low, high)
    masses = sketch.get_pmf([float(b) for b in bounds[1:-1]], inclusive=True)
    return [
        {"lower_bound": float(lo), "upper_bound": float(hi), "count": round(float(mass * n), 1)}
        for lo, hi, mass in zip(bounds[:-1], bounds[1:], masses, strict=True)
    ]


class _Text:
    """Lengths (characters), tokens and unknown tokens of a text column."""

    def __init__(self, vocabulary: Vocabulary | None, skipped: str | None, bins: Bins | None) -> None:
        self.vocabulary = vocabulary
        self.skipped = skipped
        self.lengths = _Numbers()
        self.bins = bins
        self.bin_counts = np.zeros(bins.size if bins else 0, dtype=np.int64)
        self.tokens = 0
        self.unknown = 0

    def add(self, texts: list[str]) -> None:
        if not texts:
            return
        lengths = np.fromiter(map(len, texts), dtype=np.float64, count=len(texts))
        self.lengths.add(lengths)
        if self.bins is not None:
            self.bin_counts += self.bins.counts(lengths)
        if self.vocabulary is not None:
            tokens, unknown = self.vocabulary.count(texts)
            self.tokens += tokens
            self.unknown += unknown

    def json(self) -> dict[str, Any]:
        length = self.lengths.json()
        length = {"unit": "characters", **length, "quantiles": self.lengths.quantiles()}
        if self.bins is not None:
            length["bins"] = self.bins.json(self.bin_counts)
        payload: dict[str, Any] = {"length": length}
        if self.vocabulary is None:
            payload["oov"] = {"skipped": self.skipped or "no vocabulary"}
            return payload
        payload["tokens"] = {
            "count": self.tokens,
            "mean_per_text": self.tokens / self.lengths.count if self.lengths.count else None,
        }
        payload["oov"] = {
            "rate": self.unknown / self.tokens if self.tokens else None,
            "unknown_tokens": self.unknown,
            "tokens": self.tokens,
            "vocabulary": {
                "source": self.vocabulary.source,
                "size": len(self.vocabulary.words),
                "token_pattern": self.vocabulary.token_pattern,
                "lowercase": self.vocabulary.lowercase,
            },
        }
        return payload


class ColumnProfile:
    """The statistics of one input column."""

    def __init__(
        self,
        column: InputColumn,
        *,
        bins: Bins | None = None,
        length_bins: Bins | None = None,
        vocabulary: Vocabulary | None = None,
        skipped: str | None = None,
    ) -> None:
        self.column = column
        self.present = 0
        self.missing = 0
        self.absent = 0
        self.types: Counter[str] = Counter()
        self.numbers = _Numbers()
        self.distinct = hll_sketch(HLL_LG_K)
        self.categories: Counter[str] = Counter()
        self.bins = bins
        self.bin_counts = np.zeros(bins.size if bins else 0, dtype=np.int64)
        self.text = _Text(vocabulary, skipped, length_bins) if column.role == "text" else None

    def add(self, values: np.ndarray, absent: np.ndarray) -> None:
        strings: list[str] = []
        numbers: list[float] = []
        types = self.types
        for value in values:
            kind = value_type(value)
            if kind is None:
                self.missing += 1
                continue
            types[kind] += 1
            if kind == STRING:
                strings.append(value)
            elif kind in NUMBER_TYPES:
                numbers.append(float(value))
        self.present = sum(types.values())
        self.absent += int(absent.sum())
        if self.column.dtype == "string":
            distinct = self.distinct
            for text in strings:
                distinct.update(text)
            if self.column.role == "categorical":
                self.categories.update(strings)
            if self.text is not None:
                self.text.add(strings)
            if self.bins is not None and self.bins.categories:
                self.bin_counts += self.bins.counts(strings)
        else:
            array = np.asarray(numbers, dtype=np.float64)
            self.numbers.add(array)
            if self.bins is not None and self.bins.edges:
                self.bin_counts += self.bins.counts(array)

    @property
    def inferred_type(self) -> str:
        """The column's type: its dtype's, unless the values say otherwise (the baseline's constraint)."""
        if self.column.dtype == "string":
            return STRING
        if self.types[FRACTIONAL]:
            return FRACTIONAL
        return INTEGRAL if self.types[INTEGRAL] else FRACTIONAL

    def mismatched(self) -> int:
        """Present values whose type the column does not take (numbers are one type: the model reads floats)."""
        if self.column.dtype == "string":
            return self.present - self.types[STRING]
        return self.present - self.types[INTEGRAL] - self.types[FRACTIONAL]

    def json(self) -> dict[str, Any]:
        common = {"num_present": self.present, "num_missing": self.missing}
        feature: dict[str, Any] = {"name": self.column.name, "inferred_type": self.inferred_type}
        if self.column.dtype == "string":
            strings: dict[str, Any] = {
                "common": common,
                # HyperLogLog estimates within about 1.6 %; never more distinct values than values
                "distinct_count": min(round(self.distinct.get_estimate()), self.present),
            }
            if self.column.role == "categorical":
                buckets = [{"value": v, "count": c} for v, c in self.categories.most_common(MAX_CATEGORIES)]
                strings["distribution"] = {"categorical": {"buckets": buckets}}
            feature["string_statistics"] = strings
        else:
            feature["numerical_statistics"] = {"common": common, **self.numbers.json()}
        feature["data_types"] = dict(sorted(self.types.items())) | {"absent": self.absent}
        if self.bins is not None:
            feature["bins"] = self.bins.json(self.bin_counts)
        if self.text is not None:
            feature["text_statistics"] = self.text.json()
        return feature


class Profile:
    """Statistics of a stream of records (and their predicted labels), kept in bounded memory.

    Args:
        inputs: the model's input columns, in manifest order.
        labels: the model's labels (empty for regression).
        layout: the baseline's bins (empty for a baseline's first pass).
        vocabularies: per text column, the model's vocabulary; ``skipped`` says why a column has none.
        sample_size: texts kept for the domain-classifier test.
        seed: the sample's seed.
    """

    def __init__(
        self,
        inputs: Sequence[InputColumn],
        *,
        labels: Sequence[str] = (),
        layout: Layout | None = None,
        vocabularies: Mapping[str, Vocabulary] | None = None,
        skipped: Mapping[str, str] | None = None,
        sample_size: int = 5000,
        seed: int = 42,
    ) -> None:
        layout = layout or Layout()
        vocabularies = vocabularies or {}
        self.inputs = list(inputs)
        self.labels = list(labels)
        self.columns = [
            ColumnProfile(
                column,
                bins=layout.values.get(column.name),
                length_bins=layout.lengths.get(column.name),
                vocabulary=vocabularies.get(column.name),
                skipped=(skipped or {}).get(column.name),
            )
            for column in self.inputs
        ]
        self.text_positions = [i for i, column in enumerate(self.inputs) if column.role == "text"]
        self.records = 0
        self.records_with_extra = 0
        self.extra: Counter[str] = Counter()
        self.predicted: Counter[str] = Counter()
        self.unpredicted = 0
        self.hours: Counter[datetime] = Counter()
        self.sample: Reservoir[tuple[str, ...]] = Reservoir(sample_size, seed)
        self._rows: list[np.ndarray] = []
        self._absent: list[np.ndarray] = []
        self._pending = 0

    def add(
        self,
        rows: np.ndarray,
        *,
        absent: np.ndarray | None = None,
        extra: Sequence[Sequence[str]] | None = None,
        predicted: Sequence[str | None] | None = None,
        hour: datetime | None = None,
    ) -> None:
        """Add records ``(n_records, n_inputs)`` in manifest order, with what else is known about them.

        Args:
            absent: ``(n_records, n_inputs)`` inputs the records did not carry.
            extra: per record, the fields the model does not take.
            predicted: per record, its predicted label (None: unknown).
            hour: the hour the records were answered in.
        """
        n = len(rows)
        if not n:
            return
        self.records += n
        if extra is not None:
            for fields in extra:
                if fields:
                    self.records_with_extra += 1
                    self.extra.update(set(fields))
        if predicted is not None:
            for label in predicted:
                if label is None:
                    self.unpredicted += 1
                else:
                    self.predicted[label] += 1
        else:
            self.unpredicted += n
        if hour is not None:
            self.hours[hour] += n
        if self.text_positions:
            positions = self.text_positions
            self.sample.add(
                tuple(row[i] for i in positions)
                for row in rows
                if all(type(row[i]) is str for i in positions)
            )
        self._rows.append(rows)
        self._absent.append(absent if absent is not None else np.zeros(rows.shape, dtype=bool))
        self._pending += n
        if self._pending >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Reduce the buffered rows to statistics."""
        if not self._rows:
            return
        rows = np.concatenate(self._rows) if len(self._rows) > 1 else self._rows[0]
        absent = np.concatenate(self._absent) if len(self._absent) > 1 else self._absent[0]
        self._rows, self._absent, self._pending = [], [], 0
        for position, column in enumerate(self.columns):
            column.add(rows[:, position], absent[:, position])

    def column(self, name: str) -> ColumnProfile:
        return next(column for column in self.columns if column.column.name == name)

    def statistics(self, dataset: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``statistics.json``: Model Monitor's shape with Tripod's extensions (module docstring)."""
        self.flush()
        buckets = [{"value": label, "count": self.predicted.get(label, 0)} for label in self.labels]
        buckets += [
            {"value": label, "count": count}
            for label, count in sorted(self.predicted.items())
            if label not in self.labels
        ]
        return {
            "version": 0,
            "dataset": {"item_count": self.records, **(dataset or {})},
            "features": [column.json() for column in self.columns],
            "extra_columns": {
                "records": self.records_with_extra,
                "fields": dict(self.extra.most_common(MAX_CATEGORIES)),
            },
            "predictions": {
                "name": "predicted_label",
                "num_present": sum(self.predicted.values()),
                "num_missing": self.unpredicted,
                "distribution": {"categorical": {"buckets": buckets}},
            },
        }
