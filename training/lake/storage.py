"""Where a lake lives: a local directory or an S3-compatible bucket, and the error every lake module raises."""

from __future__ import annotations

from typing import Any

from training.errors import DataError


class LakeError(DataError):
    """A lake, dataset or query the user named that cannot be used (missing table, bad SQL, bad name...)."""


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names a remote store (``s3://…``) rather than a local path (``file://`` is local)."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def s3_filesystem() -> Any:
    """An s3fs filesystem configured the standard AWS way (environment, ``~/.aws/config``, instance roles).

    A custom endpoint (MinIO, Ceph, moto, …) comes from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` or the
    profile's ``endpoint_url``, all read by botocore.  A fresh instance each time: fsspec caches instances by
    their arguments, and a cached one would keep an endpoint that the environment has since changed.
    """
    try:
        import s3fs
    except ImportError as exc:  # pragma: no cover - s3fs is in the train extra
        raise LakeError("s3:// needs s3fs: pip install -e '.[train]'") from exc
    return s3fs.S3FileSystem(skip_instance_cache=True)


def join_path(root: str, *parts: str) -> str:
    """``root/part/part`` with exactly one slash between parts (a URI keeps its ``scheme://``)."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])
