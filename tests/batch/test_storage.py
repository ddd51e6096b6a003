"""The batch job's storage: the same listing, reading and atomic writing on a local disk and on S3 (moto)."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.batch import storage
from services.batch.storage import AtomicWriter, InputObject, list_inputs, open_input, output_url
from services.errors import InvalidInput, StorageError

ROOT = Path(__file__).resolve().parents[2]
DATA = bytes(range(256)) * 4  # 1 KiB whose every byte says where it came from


def put(client: Any, bucket: str, key: str, data: bytes = b"x") -> None:
    client.put_object(Bucket=bucket.removeprefix("s3://"), Key=key, Body=data)


def keys(client: Any, bucket: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket.removeprefix("s3://"))
    return [item["Key"] for item in listing.get("Contents", [])]


def pending_uploads(client: Any, bucket: str) -> list[Any]:
    return list(client.list_multipart_uploads(Bucket=bucket.removeprefix("s3://")).get("Uploads", []))


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class Boom(Exception):
    """Raised inside a with block to interrupt a write."""


def interrupted_write(url: str, data: bytes, before_failing: Callable[[], None] = lambda: None) -> None:
    """Write ``data`` to ``url`` and fail inside the with block, as a crashing transform would."""
    with AtomicWriter(url) as out:
        out.write(data)
        before_failing()
        raise Boom


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A place to write: a local directory or a fresh S3 bucket."""
    if request.param == "s3":
        return str(request.getfixturevalue("s3_bucket"))
    return str(tmp_path / "root")


# --- listing a prefix --------------------------------------------------------------------------------------


def test_a_local_directory_lists_every_nested_file_sorted_with_hidden_entries_skipped(tmp_path: Path) -> None:
    for name in ["b.csv", "a/z.csv", "a/b/c.jsonl", ".hidden.csv", ".cache/x.csv", "a/.dotfile"]:
        write(tmp_path / "in" / name, name.encode())

    objects = list_inputs(str(tmp_path / "in"))

    assert [obj.relative for obj in objects] == ["a/b/c.jsonl", "a/z.csv", "b.csv"]
    first = objects[0]
    status = (tmp_path / "in/a/b/c.jsonl").stat()
    assert first.url == str(tmp_path / "in/a/b/c.jsonl")
    assert first.size == len(b"a/b/c.jsonl")
    assert first.version == f"{status.st_mtime_ns}-{status.st_size}"


def test_a_local_file_is_one_input_named_by_its_basename(tmp_path: Path) -> None:
    path = write(tmp_path / "deep/reviews.csv", DATA)

    status = path.stat()
    assert list_inputs(str(path)) == [
        InputObject(
            url=str(path), relative="reviews.csv", size=len(DATA), version=f"{status.st_mtime_ns}-{len(DATA)}"
        )
    ]


def test_a_local_version_changes_when_the_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", b"one")
    before = list_inputs(str(path))[0].version
    write(path, b"three")
    assert list_inputs(str(path))[0].version != before


@pytest.mark.parametrize("name", ["missing", "empty", "only-hidden"], ids=["missing", "empty", "only-hidden"])
def test_a_local_prefix_with_nothing_to_read_is_invalid_input(tmp_path: Path, name: str) -> None:
    (tmp_path / "empty").mkdir()
    write(tmp_path / "only-hidden/.secret.csv")
    source = str(tmp_path / name)

    with pytest.raises(InvalidInput, match=f"^no input objects under {re.escape(source)}$"):
        list_inputs(source)


def test_an_s3_prefix_with_a_trailing_slash_lists_the_keys_below_it(s3_client: Any, s3_bucket: str) -> None:
    for key in [
        "data/in/a/b.csv",
        "data/in/x.csv",
        "data/input2.csv",
        "data/in",
        "data/in/folder/",
        "other.csv",
    ]:
        put(s3_client, s3_bucket, key, key.encode())

    objects = list_inputs(f"{s3_bucket}/data/in/")

    assert [(obj.url, obj.relative) for obj in objects] == [
        (f"{s3_bucket}/data/in/a/b.csv", "a/b.csv"),
        (f"{s3_bucket}/data/in/x.csv", "x.csv"),
    ]
    head = s3_client.head_object(Bucket=s3_bucket.removeprefix("s3://"), Key="data/in/x.csv")
    assert objects[1].size == len(b"data/in/x.csv")
    assert objects[1].version == head["ETag"].strip('"')


def test_an_s3_prefix_without_a_trailing_slash_matches_keys_as_s3prefix_does(
    s3_client: Any, s3_bucket: str
) -> None:
    for key in ["data/in/x.csv", "data/input2.csv", "data/other.csv", "in/elsewhere.csv"]:
        put(s3_client, s3_bucket, key)

    objects = list_inputs(f"{s3_bucket}/data/in")

    assert [(obj.url, obj.relative) for obj in objects] == [
        (f"{s3_bucket}/data/in/x.csv", "in/x.csv"),
        (f"{s3_bucket}/data/input2.csv", "input2.csv"),
    ]


def test_a_bucket_url_lists_every_key_in_the_bucket(s3_client: Any, s3_bucket: str) -> None:
    for key in ["b.csv", "a/c.csv", "a/"]:
        put(s3_client, s3_bucket, key)

    assert [obj.relative for obj in list_inputs(s3_bucket)] == ["a/c.csv", "b.csv"]
    assert [obj.relative for obj in list_inputs(f"{s3_bucket}/")] == ["a/c.csv", "b.csv"]


@pytest.mark.parametrize("where", ["missing-prefix", "missing-bucket"])
def test_an_s3_prefix_with_nothing_to_read_is_invalid_input(
    s3_client: Any, s3_bucket: str, where: str
) -> None:
    put(s3_client, s3_bucket, "data/a.csv")
    source = f"{s3_bucket}/nothing/" if where == "missing-prefix" else "s3://no-such-bucket-here/data/"

    with pytest.raises(InvalidInput, match=f"^no input objects under {re.escape(source)}$"):
        list_inputs(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [("s3:///key", "an S3 URL names a bucket"), ("gs://bucket/key", "only local paths and s3:// URLs")],
    ids=["no-bucket", "other-scheme"],
)
def test_a_url_that_is_not_local_or_s3_is_invalid_input(source: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{source}: {message}"):
        list_inputs(source)


# --- manifests ---------------------------------------------------------------------------------------------


def test_a_manifest_with_a_local_prefix_lists_its_entries_sorted(tmp_path: Path) -> None:
    write(tmp_path / "in/sub/b.csv", b"bb")
    write(tmp_path / "in/a.csv", b"a")
    write(tmp_path / "in/not-listed.csv")
    manifest = write(
        tmp_path / "manifest.json", json.dumps([{"prefix": f"{tmp_path}/in/"}, "sub/b.csv", "a.csv"]).encode()
    )

    objects = list_inputs(str(manifest), "manifest")

    assert [(obj.url, obj.relative, obj.size) for obj in objects] == [
        (str(tmp_path / "in/a.csv"), "a.csv", 1),
        (str(tmp_path / "in/sub/b.csv"), "sub/b.csv", 2),
    ]


def test_a_manifest_on_s3_with_an_s3_prefix_lists_its_entries(s3_client: Any, s3_bucket: str) -> None:
    put(s3_client, s3_bucket, "raw/one.csv", b"1")
    put(s3_client, s3_bucket, "raw/deep/two.csv", b"22")
    manifest = [{"prefix": f"{s3_bucket}/raw/"}, "one.csv", "deep/two.csv"]
    put(s3_client, s3_bucket, "jobs/manifest.json", json.dumps(manifest).encode())

    objects = list_inputs(f"{s3_bucket}/jobs/manifest.json", "manifest")

    assert [(obj.url, obj.relative, obj.size) for obj in objects] == [
        (f"{s3_bucket}/raw/deep/two.csv", "deep/two.csv", 2),
        (f"{s3_bucket}/raw/one.csv", "one.csv", 1),
    ]
    assert all(obj.version for obj in objects)


def test_a_manifest_prefix_is_joined_to_entries_as_written(tmp_path: Path) -> None:
    # SageMaker concatenates the prefix and the entry: "in/part-" + "1.csv" is "in/part-1.csv".
    write(tmp_path / "in/part-1.csv")
    manifest = write(tmp_path / "m.json", json.dumps([{"prefix": f"{tmp_path}/in/part-"}, "1.csv"]).encode())

    [obj] = list_inputs(str(manifest), "manifest")

    assert (obj.url, obj.relative) == (str(tmp_path / "in/part-1.csv"), "1.csv")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("not json", "the manifest is not JSON"),
        ('{"prefix": "/x/"}', "a manifest is a JSON list, not a dict"),
        ("[]", r'a manifest starts with \{"prefix"'),
        ('["a.csv", {"prefix": "PREFIX"}]', r'a manifest starts with \{"prefix"'),
        ('[{"prefix": "PREFIX", "other": 1}, "a.csv"]', r'a manifest starts with \{"prefix"'),
        ('[{"prefix": ""}, "a.csv"]', "the manifest's prefix is empty"),
        ('[{"prefix": "PREFIX"}]', "the manifest lists no objects"),
        ('[{"prefix": "PREFIX"}, "a.csv", 7]', "manifest entry 2 is not a string: 7"),
        (
            '[{"prefix": "PREFIX"}, "/etc/passwd"]',
            r"manifest entry 1 \('/etc/passwd'\) is not a relative path",
        ),
        ('[{"prefix": "PREFIX"}, "../a.csv"]', r"manifest entry 1 \('../a.csv'\) is not a relative path"),
        ('[{"prefix": "PREFIX"}, "s3://b/a.csv"]', r"manifest entry 1 \('s3://b/a.csv'\) is not a relative"),
        ('[{"prefix": "PREFIX"}, ""]', r"manifest entry 1 \(''\) is not a relative path"),
        ('[{"prefix": "PREFIX"}, "a.csv", "a.csv"]', r"manifest entry 2 \('a.csv'\) is listed twice"),
        (
            '[{"prefix": "PREFIX"}, "a.csv", "gone.csv"]',
            "1 listed object\\(s\\) do not exist: PREFIXgone.csv$",
        ),
        ('[{"prefix": "PREFIX"}, "sub"]', "1 listed object\\(s\\) do not exist: PREFIXsub$"),
    ],
    ids=[
        "not-json",
        "not-a-list",
        "empty-list",
        "prefix-not-first",
        "prefix-with-other-keys",
        "empty-prefix",
        "no-entries",
        "entry-not-a-string",
        "absolute-entry",
        "parent-entry",
        "url-entry",
        "empty-entry",
        "duplicate",
        "missing-object",
        "directory-not-object",
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_problem(
    tmp_path: Path, document: str, problem: str
) -> None:
    write(tmp_path / "in/a.csv")
    (tmp_path / "in/sub").mkdir()
    prefix = f"{tmp_path}/in/"
    manifest = write(tmp_path / "manifest.json", document.replace("PREFIX", prefix).encode())

    pattern = f"^{re.escape(str(manifest))}: {problem.replace('PREFIX', re.escape(prefix))}"
    with pytest.raises(InvalidInput, match=pattern) as caught:
        list_inputs(str(manifest), "manifest")
    assert "\n" not in str(caught.value)


def test_a_manifest_names_at_most_three_missing_objects(s3_client: Any, s3_bucket: str) -> None:
    put(s3_client, s3_bucket, "in/here.csv")
    names = ["here.csv", "a.csv", "b.csv", "c.csv", "d.csv", "e.csv"]
    put(s3_client, s3_bucket, "m.json", json.dumps([{"prefix": f"{s3_bucket}/in/"}, *names]).encode())

    with pytest.raises(
        InvalidInput, match=r"5 listed object\(s\) do not exist: .*/in/a.csv, .*/in/c.csv and 2 more$"
    ):
        list_inputs(f"{s3_bucket}/m.json", "manifest")


def test_a_missing_manifest_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(
        InvalidInput, match=f"^{re.escape(str(tmp_path))}/m.json: the manifest does not exist$"
    ):
        list_inputs(str(tmp_path / "m.json"), "manifest")


# --- reading -----------------------------------------------------------------------------------------------


def input_at(root: str, client: Any, relative: str, data: bytes) -> InputObject:
    """``data`` stored as ``<root>/<relative>`` and listed back."""
    if storage.is_s3(root):
        put(client, root, relative, data)
    else:
        write(Path(root) / relative, data)
    [obj] = [obj for obj in list_inputs(root) if obj.relative == relative]
    return obj


@pytest.fixture
def client(root: str, request: pytest.FixtureRequest) -> Any:
    """The boto3 client when ``root`` is a bucket, else None."""
    return request.getfixturevalue("s3_client") if storage.is_s3(root) else None


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 10), (3, 700), (1000, None), (500, 5000), (7, 7), (0, None)],
    ids=["head", "middle", "tail", "past-the-end", "empty", "whole"],
)
def test_a_byte_range_reads_exactly_those_bytes(root: str, client: Any, start: int, end: int | None) -> None:
    obj = input_at(root, client, "data.bin", DATA)

    with open_input(obj, start=start, end=end) as stream:
        assert stream.read() == DATA[start:end]


def test_a_byte_range_is_read_in_small_pieces_without_passing_its_end(root: str, client: Any) -> None:
    obj = input_at(root, client, "data.bin", DATA)

    with open_input(obj, start=100, end=300) as stream:
        pieces = [stream.read(64) for _ in range(5)]
    assert b"".join(pieces) == DATA[100:300]
    assert pieces[-1] == b""


@pytest.mark.parametrize(("start", "end"), [(0, None), (0, 500), (7, None)], ids=["whole", "range", "from"])
def test_every_opened_object_reads_lines_with_a_length_limit(
    root: str, client: Any, start: int, end: int | None
) -> None:
    obj = input_at(root, client, "lines.txt", b"0123456789\nabc\n")

    with open_input(obj, start=start, end=end) as stream:
        assert stream.readline(4) == b"0123456789\nabc\n"[start : start + 4]


def test_gzip_objects_are_decompressed_as_they_are_read(root: str, client: Any) -> None:
    text = b"".join(b'{"review": "line %d"}\n' % number for number in range(2000))
    obj = input_at(root, client, "reviews.jsonl.gz", gzip.compress(text))

    with open_input(obj, gzip=True) as stream:
        assert stream.readline() == b'{"review": "line 0"}\n'
        assert stream.read() == text[len(b'{"review": "line 0"}\n') :]
    assert obj.size < len(text)


@pytest.mark.parametrize(("start", "end"), [(1, None), (0, 10)], ids=["start", "end"])
def test_gzip_with_a_byte_range_is_a_value_error(tmp_path: Path, start: int, end: int | None) -> None:
    [obj] = list_inputs(str(write(tmp_path / "a.gz", gzip.compress(b"x"))))

    with pytest.raises(ValueError, match="read whole"):
        open_input(obj, gzip=True, start=start, end=end)


def test_a_range_that_ends_before_it_starts_is_a_value_error(tmp_path: Path) -> None:
    [obj] = list_inputs(str(write(tmp_path / "a.csv", DATA)))

    with pytest.raises(ValueError, match=r"bad byte range \[5, 2\)"):
        open_input(obj, start=5, end=2)


def test_opening_a_missing_object_is_a_storage_error_naming_it(root: str, client: Any) -> None:
    obj = input_at(root, client, "there.csv", b"x")
    gone = InputObject(url=obj.url.replace("there", "gone"), relative="gone.csv", size=1, version="")

    with pytest.raises(StorageError, match=f"^cannot read {re.escape(gone.url)}: does not exist$"):
        open_input(gone)


# --- small objects: the job's state ------------------------------------------------------------------------


def test_state_objects_round_trip_and_list_under_their_folder(root: str) -> None:
    first, second = f"{root}/state/b.json", f"{root}/state/a/c.json"

    assert storage.list_urls(f"{root}/state") == []
    assert not storage.exists(first)
    storage.write_bytes(first, b'{"ok": true}')
    storage.write_bytes(second, b"{}")
    storage.write_bytes(f"{root}/elsewhere.json", b"{}")

    assert storage.exists(first)
    assert not storage.exists(f"{root}/state")  # a folder is not an object
    assert storage.read_bytes(first) == b'{"ok": true}'
    expected = sorted([first, second])
    assert storage.list_urls(f"{root}/state") == expected
    assert storage.list_urls(f"{root}/state/") == expected

    storage.remove(first)
    storage.remove(first)  # already gone is fine
    assert storage.list_urls(f"{root}/state") == [second]


def test_reading_a_missing_object_is_a_storage_error_naming_it(root: str) -> None:
    with pytest.raises(StorageError, match=f"^cannot read {re.escape(root)}/none.json: does not exist$"):
        storage.read_bytes(f"{root}/none.json")


def test_a_write_in_progress_is_not_listed(tmp_path: Path) -> None:
    with AtomicWriter(str(tmp_path / "state/a.json")) as out:
        out.write(b"{}")
        assert storage.list_urls(str(tmp_path / "state")) == []
        assert len(os.listdir(tmp_path / "state")) == 1  # the temporary file is there, hidden
    assert storage.list_urls(str(tmp_path / "state")) == [str(tmp_path / "state/a.json")]


# --- atomic writes -----------------------------------------------------------------------------------------


def test_a_completed_local_write_appears_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    destination = tmp_path / "out/sub/a.csv.out"

    with AtomicWriter(str(destination)) as out:
        out.write(b"first\n")
        out.write(memoryview(b"second\n"))
        assert not destination.exists()

    assert destination.read_bytes() == b"first\nsecond\n"
    assert out.bytes_written == len(b"first\nsecond\n")
    assert os.listdir(destination.parent) == ["a.csv.out"]


def test_an_exception_inside_a_local_write_leaves_nothing_and_keeps_the_old_object(tmp_path: Path) -> None:
    fresh, existing = tmp_path / "out/fresh.out", write(tmp_path / "out/existing.out", b"old")

    for destination in (fresh, existing):
        with pytest.raises(Boom):
            interrupted_write(str(destination), b"half of it")

    assert sorted(os.listdir(tmp_path / "out")) == ["existing.out"]
    assert existing.read_bytes() == b"old"


@pytest.mark.parametrize("size", [1000, 9 << 20], ids=["one-put", "multipart"])
def test_a_completed_s3_write_appears_whole(s3_client: Any, s3_bucket: str, size: int) -> None:
    data = os.urandom(size)
    url = f"{s3_bucket}/out/a.csv.out"

    with AtomicWriter(url) as out:
        for offset in range(0, size, 1 << 20):
            out.write(data[offset : offset + (1 << 20)])
        assert keys(s3_client, s3_bucket) == []

    assert storage.read_bytes(url) == data
    assert out.bytes_written == size
    assert pending_uploads(s3_client, s3_bucket) == []


@pytest.mark.parametrize("size", [1000, 9 << 20], ids=["one-put", "multipart"])
def test_an_exception_inside_an_s3_write_leaves_no_object_and_no_upload(
    s3_client: Any, s3_bucket: str, size: int
) -> None:
    uploads_while_writing: list[int] = []

    def count_uploads() -> None:
        uploads_while_writing.append(len(pending_uploads(s3_client, s3_bucket)))

    with pytest.raises(Boom):
        interrupted_write(f"{s3_bucket}/out/a.csv.out", os.urandom(size), count_uploads)

    # A multipart upload was really under way (its first part sent) before the failure aborted it.
    assert uploads_while_writing == [1 if size > storage.BLOCK_SIZE else 0]

    assert keys(s3_client, s3_bucket) == []
    assert pending_uploads(s3_client, s3_bucket) == []


def test_writing_under_a_local_file_is_a_one_line_storage_error(tmp_path: Path) -> None:
    write(tmp_path / "file")
    url = str(tmp_path / "file/out/a.out")

    with pytest.raises(
        StorageError, match=f"^cannot write {re.escape(url)}: a file is in the way of a directory$"
    ):
        storage.write_bytes(url, b"x")


def test_writing_over_a_local_directory_is_a_storage_error_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "out/a.out").mkdir(parents=True)

    with pytest.raises(StorageError, match=f"^cannot write {re.escape(str(tmp_path))}/out/a.out: "):
        storage.write_bytes(str(tmp_path / "out/a.out"), b"x")
    assert os.listdir(tmp_path / "out") == ["a.out"]


def test_writing_to_a_missing_bucket_is_a_one_line_storage_error(s3_env: dict[str, str]) -> None:
    url = "s3://no-such-bucket-for-output/out/a.out"

    with pytest.raises(StorageError, match=f"^cannot write {re.escape(url)}: does not exist$"):
        storage.write_bytes(url, b"x")


def test_an_unreachable_endpoint_is_a_one_line_storage_error_without_credentials(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from harness.server import free_port

    secret = "do-not-print-this-secret"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    with pytest.raises(StorageError, match=r"^cannot read s3://bucket/a\.csv: Could not connect") as caught:
        storage.read_bytes("s3://bucket/a.csv")
    assert "\n" not in str(caught.value) and secret not in str(caught.value)


# --- names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "relative", "suffix", "expected"),
    [
        ("/data/out", "a/b.csv", ".out", "/data/out/a/b.csv.out"),
        ("/data/out/", "b.csv", ".out", "/data/out/b.csv.out"),
        ("s3://bucket/out", "a/b.csv", ".out", "s3://bucket/out/a/b.csv.out"),
        ("s3://bucket/out/", "b.csv", ".out", "s3://bucket/out/b.csv.out"),
        ("s3://bucket", "b.csv", "", "s3://bucket/b.csv"),
    ],
    ids=["local", "local-slash", "s3", "s3-slash", "bucket-no-suffix"],
)
def test_output_url_joins_output_and_relative_path(
    output: str, relative: str, suffix: str, expected: str
) -> None:
    assert output_url(output, relative, suffix) == expected


@pytest.mark.parametrize(
    "relative", ["", "/etc/passwd", "../escape.csv"], ids=["empty", "absolute", "parent"]
)
def test_output_url_refuses_a_path_that_leaves_the_output(relative: str) -> None:
    with pytest.raises(ValueError, match="is not a relative path"):
        output_url("/data/out", relative)


def test_the_module_loads_no_s3_or_numeric_library_until_an_s3_url_is_used(tmp_path: Path) -> None:
    write(tmp_path / "a.csv")
    code = (
        "import json, sys\n"
        "from services.batch import storage\n"
        "heavy = ['fsspec', 's3fs', 'botocore', 'numpy', 'onnxruntime', 'pandas']\n"
        "at_import = [m for m in heavy if m in sys.modules]\n"
        f"storage.list_inputs({str(tmp_path)!r})\n"
        "print(json.dumps([at_import, [m for m in heavy if m in sys.modules]]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    at_import, after_local_work = json.loads(result.stdout)
    assert at_import == []
    assert after_local_work in ([], ["fsspec"])
