"""Reading files' bytes inside the executors, by path (local, or any fsspec URL such as s3://).

Free of pandas on purpose: every inference task imports this module, and importing pandas
costs each Python worker ~0.5 s as it starts, while the first tasks wait for it
(README, Performance).
"""

from __future__ import annotations

from collections.abc import Sequence

import fsspec


def read_files(paths: Sequence[str]) -> list[bytes | None]:
    """Each file's bytes, or None for one that cannot be read (gone, no permission), so
    that one bad file cannot fail a partition of good ones (preprocessing reports it).

    One ``cat_ranges`` call per batch: on S3, s3fs fetches the objects concurrently, where one
    GET after another would leave the cores waiting on latency; on disk it reads them in turn.
    (``cat_ranges`` takes paths literally: a ``[`` in a file name is not a glob.)
    """
    if not paths:
        return []
    fs, _ = fsspec.core.url_to_fs(paths[0])  # one listing, one filesystem
    contents = fs.cat_ranges([fs._strip_protocol(path) for path in paths], None, None, on_error="return")
    return [None if isinstance(data, BaseException) else data for data in contents]
