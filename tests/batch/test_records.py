"""Records, byte ranges and mini-batches: every record read exactly once whatever the cut, in order, within
the payload and record limits."""

from __future__ import annotations

import io
import itertools

import pytest

from services.batch import records as records_module
from services.batch.plan import MIB, plan_units, shard_units
from services.batch.records import MiniBatch, Record, line_records, mini_batches, whole_record
from services.batch.storage import InputObject


def records_of(
    data: bytes, start: int, end: int | None, *, skip_header: bool = False, max_bytes: int = 1 << 20
) -> list[Record]:
    """The records of ``data[start:end]`` (tests using it take the ``block`` fixture: several read sizes)."""
    stream = io.BytesIO(data)
    stream.seek(max(0, start - 1))
    return list(line_records(stream, start, end, skip_header=skip_header, max_bytes=max_bytes))


def cut_everywhere(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, None]
    found: list[bytes] = []
    for start, end in itertools.pairwise(bounds):
        assert start is not None
        found.extend(record.data for record in records_of(data, start, end))
    return found


SAMPLE = b"a,1\r\nbb,2\n\nccc,3\n  \ndddd,4"


@pytest.fixture(params=[1, 2, 5, 64, records_module.BLOCK], ids=lambda size: f"block-{size}")
def block(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every line test at several read sizes: lines spanning blocks, terminators split between blocks."""
    size: int = request.param
    monkeypatch.setattr(records_module, "BLOCK", size)
    return size


def test_line_records_drop_terminators_and_blank_lines_but_keep_byte_offsets(block: int) -> None:
    records = records_of(SAMPLE, 0, None)

    assert [(r.index, r.offset, r.data) for r in records] == [
        (0, 0, b"a,1"),
        (1, 5, b"bb,2"),
        (2, 11, b"ccc,3"),
        (3, 20, b"dddd,4"),
    ]
    assert all(SAMPLE[r.offset : r.offset + len(r.data)] == r.data for r in records)


@pytest.mark.parametrize("cut", range(1, len(SAMPLE)))
def test_a_record_belongs_to_the_range_holding_its_first_byte_at_every_cut(cut: int, block: int) -> None:
    assert cut_everywhere(SAMPLE, [cut]) == [b"a,1", b"bb,2", b"ccc,3", b"dddd,4"]


def test_many_small_ranges_read_every_record_exactly_once(block: int) -> None:
    data = b"".join(b"record-%d,%s\n" % (i, b"x" * (i % 7)) for i in range(300))

    for step in (1, 3, 16, 97):
        found = cut_everywhere(data, list(range(step, len(data), step)))
        assert found == [line for line in data.split(b"\n") if line]


def test_the_header_is_skipped_only_in_the_range_at_the_start(block: int) -> None:
    data = b"text,id\nhello,1\nworld,2\n"

    assert [r.data for r in records_of(data, 0, 12, skip_header=True)] == [b"hello,1"]
    assert [r.data for r in records_of(data, 12, None, skip_header=True)] == [b"world,2"]


def test_a_line_too_long_to_send_is_read_through_and_kept_only_as_its_size(block: int) -> None:
    data = b"short\n" + b"y" * 100 + b"\r\n" + b"z" * 30 + b"\nlast"

    records = records_of(data, 0, None, max_bytes=10)

    assert [(r.index, r.offset, r.data, r.size) for r in records] == [
        (0, 0, b"short", 5),
        (1, 6, b"", 100),
        (2, 108, b"", 30),
        (3, 139, b"last", 4),
    ]


def test_a_range_starting_inside_a_long_line_skips_it_in_pieces(block: int) -> None:
    data = b"x" * 50 + b"\nnext\n"

    assert [r.data for r in records_of(data, 20, None, max_bytes=8)] == [b"next"]


def test_split_type_none_makes_the_whole_object_one_record_and_an_empty_object_none() -> None:
    assert list(whole_record(io.BytesIO(b"a\nb\n"), max_bytes=10)) == [Record(0, 0, b"a\nb\n")]
    assert list(whole_record(io.BytesIO(b""), max_bytes=10)) == []


def test_an_object_too_large_to_send_whole_is_kept_only_as_its_size() -> None:
    (record,) = whole_record(io.BytesIO(b"q" * (3 << 20)), max_bytes=1 << 20)

    assert (record.data, record.size) == (b"", 3 << 20)


def make_records(*sizes: int) -> list[Record]:
    return [Record(i, 0, b"x" * size) for i, size in enumerate(sizes)]


def test_multi_record_batches_fill_the_payload_counting_each_newline() -> None:
    batches = list(
        mini_batches(make_records(4, 4, 4, 4), multi=True, max_bytes=10, max_records=100, line_split=True)
    )

    assert [[r.index for r in b.records] for b in batches] == [[0, 1], [2, 3]]
    assert batches[0].payload(line_split=True) == b"xxxx\nxxxx\n"


def test_multi_record_batches_respect_the_record_limit() -> None:
    batches = list(
        mini_batches(make_records(*[1] * 7), multi=True, max_bytes=1000, max_records=3, line_split=True)
    )

    assert [len(b.records) for b in batches] == [3, 3, 1]


def test_single_record_sends_one_record_per_request() -> None:
    batches = list(
        mini_batches(make_records(1, 1, 1), multi=False, max_bytes=1000, max_records=3, line_split=True)
    )

    assert [len(b.records) for b in batches] == [1, 1, 1]


def test_a_record_over_the_payload_limit_or_refused_is_yielded_alone_unsent_in_its_place() -> None:
    records = [*make_records(2, 20, 2), Record(3, 0, b"", oversize=11), Record(4, 0, b"", refused=True)]
    batches = list(mini_batches(records, multi=True, max_bytes=10, max_records=100, line_split=True))

    assert [([r.index for r in b.records], b.unsent) for b in batches] == [
        ([0], False),
        ([1], True),
        ([2], False),
        ([3], True),
        ([4], True),
    ]


def test_a_whole_object_payload_is_sent_as_it_is() -> None:
    assert MiniBatch([Record(0, 0, b"a\nb")]).payload(line_split=False) == b"a\nb"


def obj(name: str, size: int) -> InputObject:
    return InputObject(url=f"/in/{name}", relative=name, size=size, version="v")


def test_only_large_splittable_objects_are_cut_into_consecutive_ranges() -> None:
    units = plan_units([obj("a", 5 * MIB // 2), obj("b", MIB)], splittable=True, split_mb=1)

    assert [(u.name, u.start, u.end) for u in units] == [
        ("a.part-00000-of-00003", 0, MIB),
        ("a.part-00001-of-00003", MIB, 2 * MIB),
        ("a.part-00002-of-00003", 2 * MIB, None),
        ("b", 0, None),
    ]
    assert len(plan_units([obj("a", 5 * MIB)], splittable=False, split_mb=1)) == 1


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_take_every_unit_exactly_once(count: int) -> None:
    units = plan_units([obj(f"f{i}", (i % 3 + 1) * MIB) for i in range(5)], splittable=True, split_mb=1)

    taken = [unit for index in range(count) for unit in shard_units(units, index, count)]

    assert sorted(taken, key=units.index) == units
