"""The encoding cache (training/automl/families/encoding_cache.py): each distinct text is encoded once, shards
survive a new process, and a damaged shard costs a re-encoding, never a wrong vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.automl.families import encoding_cache
from training.automl.families.encoding_cache import EncodingCache, text_key


class CountingEncoder:
    """Vectors derived from the text, and how many texts it was asked for."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(texts)
        return np.array([[len(t), sum(map(ord, t)) % 97] for t in texts], dtype=np.float32)


def test_each_distinct_text_is_encoded_once_and_rows_keep_their_order(tmp_path: Path) -> None:
    cache, encoder = EncodingCache("fake", (2,), tmp_path), CountingEncoder()
    first = cache.vectors(["b", "a", "b", ""], encoder)
    assert encoder.calls == [["b", "a", ""]]
    second = cache.vectors(["", "a", "c"], encoder)
    assert encoder.calls[1:] == [["c"]]
    np.testing.assert_array_equal(first[[3, 1]], second[:2])
    assert (cache.encoded, cache.hits) == (4, 2)  # hits: rows already cached before the call


def test_flushed_shards_answer_a_new_cache_without_encoding(tmp_path: Path) -> None:
    texts = [f"review {i}" for i in range(50)]
    writer = EncodingCache("fake", (2,), tmp_path)
    expected = writer.vectors(texts, CountingEncoder())
    assert writer.flush() is not None and writer.flush() is None  # nothing new the second time
    reader, encoder = EncodingCache("fake", (2,), tmp_path), CountingEncoder()
    np.testing.assert_array_equal(reader.vectors(texts, encoder), expected)
    assert encoder.calls == [] and reader.loaded == 50 and reader.hits == 50


def test_a_key_ending_in_nul_bytes_survives_the_disk(tmp_path: Path) -> None:
    text = next(f"t{i}" for i in range(100_000) if text_key(f"t{i}").endswith(b"\x00"))
    writer = EncodingCache("fake", (2,), tmp_path)
    writer.vectors([text], CountingEncoder())
    writer.flush()
    reader, encoder = EncodingCache("fake", (2,), tmp_path), CountingEncoder()
    reader.vectors([text], encoder)
    assert encoder.calls == []


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape", "not_a_zip"])
def test_a_damaged_shard_is_skipped_and_its_rows_encoded_again(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = EncodingCache("fake", (2,), tmp_path)
    writer.vectors(["x", "y"], CountingEncoder())
    shard = writer.flush()
    assert shard is not None
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:40])
    elif damage == "wrong_shape":
        np.savez(shard, keys=np.zeros((2, 16), dtype=np.uint8), vectors=np.zeros((2, 3), dtype=np.float32))
    else:
        shard.write_text("{}")
    reader, encoder = EncodingCache("fake", (2,), tmp_path), CountingEncoder()
    reader.vectors(["x", "y"], encoder)
    assert encoder.calls == [["x", "y"]] and reader.loaded == 0
    assert "skipping unreadable shard" in caplog.text


def test_the_shared_cache_lives_under_tripod_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIPOD_CACHE_DIR", str(tmp_path))
    encoding_cache.forget_shared_caches()
    cache = encoding_cache.shared_cache("fake", (2,))
    assert cache is encoding_cache.shared_cache("fake", (2,))
    cache.vectors(["z"], CountingEncoder())
    assert cache.flush() is not None and cache.directory == tmp_path / "encodings" / "fake"
    encoding_cache.forget_shared_caches()
