"""SageMaker batch transform's DataProcessing: ``InputFilter``, ``JoinSource`` and ``OutputFilter``.

A job passes each record through three steps, as SageMaker's developer guide documents them: the input filter
picks the part of the record the model sees, the join puts the model's answer beside the *original* input
record, and the output filter picks the part of that (or of the bare answer) that is written out.

Expressions are the guide's JSONPath subset, and nothing else: ``$``, ``.name``, ``*``, ``['a','b']``,
``[0,-1]`` and ``[start:end]``.  Anything outside it (``..``, ``?(...)``, nested names inside brackets) is
refused when the job is configured, not silently given some other library's meaning.  CSV rows are arrays of
string fields; on them only index-based paths apply and slice ends are *inclusive*, as the guide says
("``$[1:4]`` specifies the second through fifth columns").  JSON slices keep the usual exclusive end.
An index or slice bound outside a record is an error, never a silently shorter record: SageMaker reports
indexes outside "the dimension size" as errors, and a model fed one column too few fails far from the cause.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from services.codecs.csv_records import decode_csv
from services.codecs.json_records import encode_json, parse_json
from services.codecs.media import CONTENT_TYPES, CSV, parse_media_type
from services.codecs.text import utf8_text
from services.errors import InvalidInput

JoinSource = Literal["None", "Input"]
OUTPUT_KEY = "SageMakerOutput"
INPUT_KEY = "SageMakerInput"
SUBSET = "use $, .name, *, ['name',...], [index,...] or [start:end]"

_NAME = re.compile(r"[^.\[\]'\"*()?@$,:\s]+")
_QUOTED = r"(?:'[^']*'|\"[^\"]*\")"
_NAMES = re.compile(rf"\[\s*{_QUOTED}(?:\s*,\s*{_QUOTED})*\s*\]")
_WILDCARD = re.compile(r"\[\s*\*\s*\]")
_INDEXES = re.compile(r"\[\s*-?\d+(?:\s*,\s*-?\d+)*\s*\]")
_SLICE = re.compile(r"\[\s*(-?\d+)?\s*:\s*(-?\d+)?\s*\]")


def _kind(value: Any) -> str:
    """How an error names a value that does not fit a step."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a boolean" if isinstance(value, bool) else "a number"


@dataclass(frozen=True)
class _Names:
    """``.name`` or ``['a','b']``: one name gives its value, several an object of just those keys."""

    names: tuple[str, ...]

    multi: ClassVar[bool] = False

    def apply(self, value: Any, fail: Callable[[str], InvalidInput], csv: bool) -> list[Any]:
        if not isinstance(value, dict):
            raise fail(f"{self.names[0]!r} selects from an object, found {_kind(value)}")
        missing = [name for name in self.names if name not in value]
        if missing:
            raise fail(f"the record has no key {missing[0]!r}")
        if len(self.names) == 1:
            return [value[self.names[0]]]
        return [{name: value[name] for name in self.names}]


@dataclass(frozen=True)
class _Wildcard:
    """``*`` or ``[*]``: every value of an object or every element of an array."""

    multi: ClassVar[bool] = True

    def apply(self, value: Any, fail: Callable[[str], InvalidInput], csv: bool) -> list[Any]:
        if isinstance(value, dict):
            return list(value.values())
        if isinstance(value, list):
            return list(value)
        raise fail(f"'*' selects from an object or an array, found {_kind(value)}")


def _position(index: int, length: int, fail: Callable[[str], InvalidInput], *, end: bool = False) -> int:
    """``index`` counted from the front; an exclusive ``end`` may be one past the last element."""
    position = index + length if index < 0 else index
    if not 0 <= position < length + (1 if end else 0):
        raise fail(f"index {index} is outside the record (length {length})")
    return position


@dataclass(frozen=True)
class _Indexes:
    """``[0]`` gives one element; ``[0,2,-1]`` an array of them, in the order written."""

    indexes: tuple[int, ...]

    @property
    def multi(self) -> bool:
        return len(self.indexes) > 1

    def apply(self, value: Any, fail: Callable[[str], InvalidInput], csv: bool) -> list[Any]:
        if not isinstance(value, list):
            raise fail(f"[{self.indexes[0]}] selects from an array, found {_kind(value)}")
        return [value[_position(index, len(value), fail)] for index in self.indexes]


@dataclass(frozen=True)
class _Slice:
    """``[start:end]``, either bound omitted; the end is inclusive on CSV rows, exclusive on JSON arrays."""

    start: int | None
    end: int | None

    multi: ClassVar[bool] = True

    def apply(self, value: Any, fail: Callable[[str], InvalidInput], csv: bool) -> list[Any]:
        if not isinstance(value, list):
            raise fail(f"a slice selects from an array, found {_kind(value)}")
        length = len(value)
        start = 0 if self.start is None else _position(self.start, length, fail)
        if self.end is None:
            return value[start:]
        if csv:
            return value[start : _position(self.end, length, fail) + 1]
        return value[start : _position(self.end, length, fail, end=True)]


_Step = _Names | _Wildcard | _Indexes | _Slice


@dataclass(frozen=True)
class JsonPath:
    """A parsed SageMaker JSONPath expression.

    Parsed once when a job is configured, so a typo fails the job before any record is read.  Selection follows
    the usual JSONPath rule: after a step that can match several values (``*``, a slice, several indexes) the
    later steps apply to each of them and the result is an array; otherwise the result is the value itself.
    """

    expression: str
    steps: tuple[_Step, ...]

    def __str__(self) -> str:
        return self.expression

    @classmethod
    def parse(cls, expression: str) -> JsonPath:
        """Parse an expression of the guide's subset.

        Raises:
            InvalidInput: anything outside the subset, naming the expression and the position (from 0).
        """

        def fail(position: int, problem: str) -> InvalidInput:
            return InvalidInput(f"JSONPath {expression!r}: {problem} at position {position}; {SUBSET}")

        if not expression.startswith("$"):
            raise fail(0, "expected '$' (the record) first")
        steps: list[_Step] = []
        position = 1
        while position < len(expression):
            char = expression[position]
            if expression.startswith("..", position):
                raise fail(position, "'..' (deep scan) is not supported")
            if char == ".":
                position += 1
                if expression.startswith("*", position):
                    steps.append(_Wildcard())
                    position += 1
                elif not expression.startswith("[", position):
                    name = _NAME.match(expression, position)
                    if name is None:
                        raise fail(position, "expected a name, '*' or '[' after '.'")
                    steps.append(_Names((name.group(),)))
                    position = name.end()
                continue  # a bracket after a dot is allowed: $.field1.['child1','child2']
            if char != "[":
                raise fail(position, f"unexpected {char!r}")
            step, end = _bracket(expression, position, fail)
            steps.append(step)
            position = end
        return cls(expression, tuple(steps))

    @property
    def is_identity(self) -> bool:
        """``$``: the whole record, so a job can pass bytes through without parsing them."""
        return not self.steps

    def check_for(self, content_type: str) -> None:
        """Refuse an expression that cannot apply to records of ``content_type``.

        Raises:
            InvalidInput: a name on CSV, whose rows are arrays of fields with no names.
        """
        if _format(content_type) == CSV:
            named = next((step for step in self.steps if isinstance(step, _Names)), None)
            if named is not None:
                raise InvalidInput(
                    f"JSONPath {self.expression!r} selects {named.names[0]!r} by name, but a CSV row is an "
                    "array of fields: select them by index, as in $[0] or $[1:]"
                )

    def select(self, value: Any, *, csv: bool = False) -> Any:
        """Apply the expression to a parsed record.

        Args:
            value: the record, as :func:`parse_record` gives it.
            csv: the record is a CSV row: slice ends are inclusive and names are refused.

        Raises:
            InvalidInput: a step that does not fit the record (an index outside it, a missing key, a name on an
                array), naming the expression.
        """
        if csv:
            self.check_for(CSV)

        def fail(problem: str) -> InvalidInput:
            return InvalidInput(f"JSONPath {self.expression!r}: {problem}")

        matches = [value]
        multi = False
        for step in self.steps:
            matches = [found for match in matches for found in step.apply(match, fail, csv)]
            multi = multi or step.multi
        return matches if multi else matches[0]


def _bracket(expression: str, position: int, fail: Callable[[int, str], InvalidInput]) -> tuple[_Step, int]:
    """The step written in brackets at ``position``, and where the text after it starts."""
    if "]" not in expression[position:]:
        raise fail(position, "'[' is not closed")
    inside = expression[position + 1 :].lstrip()[:1]
    if inside in ("?", "("):
        raise fail(position, "filter and script expressions are not supported")
    if (match := _WILDCARD.match(expression, position)) is not None:
        return _Wildcard(), match.end()
    if (match := _NAMES.match(expression, position)) is not None:
        names = tuple(quoted[1:-1] for quoted in re.findall(_QUOTED, match.group()))
        nested = next((name for name in names if set(name) & set(".[]")), None)
        if nested is not None:
            raise fail(position, f"nested children inside brackets ({nested!r}) are not supported")
        return _Names(names), match.end()
    if (match := _INDEXES.match(expression, position)) is not None:
        return _Indexes(tuple(int(index) for index in re.findall(r"-?\d+", match.group()))), match.end()
    if (match := _SLICE.match(expression, position)) is not None:
        start, end = (None if bound is None else int(bound) for bound in match.groups())
        return _Slice(start, end), match.end()
    raise fail(position, "expected ['name',...], [index,...], [start:end] or [*]")


def _format(content_type: str) -> str:
    """The record format a content type names (aliases of JSON Lines included)."""
    kind, _ = parse_media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise InvalidInput(f"content type {content_type!r} is not one of {', '.join(sorted(CONTENT_TYPES))}")
    return CONTENT_TYPES[kind]


def parse_record(data: bytes | str, content_type: str) -> Any:
    """One record as a value: a CSV row as a list of string fields, a JSON or JSON Lines record as its JSON.

    The codecs' own decoders read it, so a record meets the same limits and errors here as over HTTP.

    Raises:
        InvalidInput: not UTF-8, not valid JSON, or not exactly one CSV row.
    """
    if _format(content_type) != CSV:
        return parse_json(data, "the record")
    text = data if isinstance(data, str) else utf8_text(data, "the record")
    rows = decode_csv(text).items
    if len(rows) != 1:
        raise InvalidInput(f"a CSV record must be exactly one row, found {len(rows)}")
    return rows[0]


def _csv_field(value: Any) -> str:
    """Text as itself, null as an empty field, anything else in its JSON spelling (``true``, ``[1,2]``)."""
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def serialize_record(value: Any, content_type: str) -> bytes:
    """One record in ``content_type``, without a line end (the job writes those).

    CSV: an array is one row of fields, an object the row of its values (as Tripod's CSV answers are written),
    a scalar a row of one field.  JSON and JSON Lines: compact JSON.  Both read back with :func:`parse_record`.
    """
    if _format(content_type) != CSV:
        return encode_json(value)
    fields = (
        list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else [value]
    )
    out = io.StringIO()
    # "\r\n" as the terminator makes the writer quote fields holding either character.
    csv.writer(out, lineterminator="\r\n").writerow([_csv_field(field) for field in fields])
    return out.getvalue().removesuffix("\r\n").encode()


def join(input_record: Any, output_record: Any, content_type: str) -> Any:
    """``JoinSource=Input``: the original input record with the model's answer beside it.

    CSV: the answer's fields appended to the input row's.  JSON and JSON Lines: an object input gains the key
    ``SageMakerOutput``; any other input becomes ``{"SageMakerInput": input, "SageMakerOutput": answer}``.

    Raises:
        InvalidInput: an input object that already has ``SageMakerOutput`` (SageMaker would overwrite it; losing
            a field of the input without a word is worse than stopping), or a CSV input that is not a row.
    """
    if _format(content_type) == CSV:
        if not isinstance(input_record, list):
            raise InvalidInput(f"a CSV input record is an array of fields, found {_kind(input_record)}")
        return input_record + (output_record if isinstance(output_record, list) else [output_record])
    if not isinstance(input_record, dict):
        return {INPUT_KEY: input_record, OUTPUT_KEY: output_record}
    if OUTPUT_KEY in input_record:
        raise InvalidInput(
            f"the input record already has a {OUTPUT_KEY!r} key, which the join would overwrite; "
            "rename it or do not join"
        )
    return {**input_record, OUTPUT_KEY: output_record}


def _check_join(content_type: str, accept: str) -> None:
    if (_format(content_type) == CSV) != (_format(accept) == CSV):
        raise InvalidInput(
            f"JoinSource 'Input' puts each answer beside its input record, so both must be CSV or both "
            f"JSON / JSON Lines; got ContentType {content_type!r} and Accept {accept!r}"
        )


def _labelled(label: str, path: JsonPath, value: Any, csv: bool) -> Any:
    """``path`` applied, its errors saying which filter failed."""
    try:
        return path.select(value, csv=csv)
    except InvalidInput as exc:
        raise InvalidInput(f"{label}: {exc}") from exc


@dataclass(frozen=True)
class DataProcessing:
    """A job's DataProcessing, validated once; applies to every record of the job."""

    input_filter: JsonPath
    output_filter: JsonPath
    join_source: JoinSource

    @classmethod
    def from_options(
        cls,
        input_filter: str = "$",
        output_filter: str = "$",
        join_source: str = "None",
        *,
        content_type: str,
        accept: str,
    ) -> DataProcessing:
        """Parse and check the options against the job's content types, before any record is read.

        Raises:
            InvalidInput: an expression outside the subset or that cannot apply to its records (a name on
                CSV), a JoinSource other than ``None``/``Input``, or a join of CSV with JSON.
        """
        paths: list[JsonPath] = []
        for label, expression, kind in (
            ("InputFilter", input_filter, content_type),
            ("OutputFilter", output_filter, accept),  # a join's record is in the answer's format
        ):
            try:
                path = JsonPath.parse(expression)
                path.check_for(kind)
            except InvalidInput as exc:
                raise InvalidInput(f"{label}: {exc}") from exc
            paths.append(path)
        if join_source not in ("None", "Input"):
            raise InvalidInput(f"JoinSource must be 'None' or 'Input', not {join_source!r}")
        source: JoinSource = "Input" if join_source == "Input" else "None"
        if source == "Input":
            _check_join(content_type, accept)
        return cls(paths[0], paths[1], source)

    def model_input(self, raw: bytes, content_type: str) -> bytes:
        """The part of a raw input record the model sees, in the same format; ``raw`` itself for ``$``."""
        if self.input_filter.is_identity:
            return raw
        csv_rows = _format(content_type) == CSV
        selected = _labelled("InputFilter", self.input_filter, parse_record(raw, content_type), csv_rows)
        return serialize_record(selected, content_type)

    def final_output(self, raw_input: bytes, raw_output: bytes, content_type: str, accept: str) -> bytes:
        """What the job writes for one record: the join (if any), then the output filter, in ``accept``.

        Args:
            raw_input: the record as read, before the input filter (the join uses the original).
            raw_output: the model's answer to it, in ``accept``.

        Returns:
            ``raw_output`` itself when there is nothing to do (no join, output filter ``$``).
        """
        if self.join_source == "None" and self.output_filter.is_identity:
            return raw_output
        record = parse_record(raw_output, accept)
        if self.join_source == "Input":
            _check_join(content_type, accept)
            record = join(parse_record(raw_input, content_type), record, content_type)
        csv_rows = _format(accept) == CSV
        return serialize_record(_labelled("OutputFilter", self.output_filter, record, csv_rows), accept)
