"""The script ``spark-submit`` runs on EMR: the packaged project, with its configuration
fetched from S3.

    spark-submit s3://BUCKET/PREFIX/emr/artifacts/emr_entrypoint.py \\
        --conf-source s3://BUCKET/PREFIX/emr/artifacts/conf-fruits_kedro.tar.gz \\
        --env emr --params bucket=BUCKET,prefix=PREFIX

Every argument is handed to ``kedro run`` of the installed wheel (``fruits_kedro.__main__``);
only ``--conf-source`` is rewritten: an ``s3://`` archive is first copied to a local
temporary file, because Kedro opens configuration archives from local disk. The file is
self-contained (standard library + fsspec) so that spark-submit can ship it alone; the
project itself comes from the wheel the bootstrap action installed on every node.
"""

from __future__ import annotations

import os
import sys
import tempfile

CONF_SOURCE_OPTION = "--conf-source"


def split_conf_source(argv: list[str]) -> tuple[str | None, list[str]]:
    """(value of --conf-source, the other arguments); accepts ``--conf-source X`` and ``=X``."""
    rest: list[str] = []
    conf_source = None
    args = iter(argv)
    for arg in args:
        if arg == CONF_SOURCE_OPTION:
            conf_source = next(args, None)
            if conf_source is None:
                raise SystemExit(f"{CONF_SOURCE_OPTION} needs a value (an s3:// or local .tar.gz)")
        elif arg.startswith(CONF_SOURCE_OPTION + "="):
            conf_source = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return conf_source, rest


def localise(conf_source: str, folder: str) -> str:
    """A local path for ``conf_source``: remote archives are downloaded into ``folder``."""
    if "://" not in conf_source or conf_source.startswith("file://"):
        return conf_source
    import fsspec

    local_path = os.path.join(folder, os.path.basename(conf_source.rstrip("/")))
    try:
        with fsspec.open(conf_source, "rb") as source, open(local_path, "wb") as target:
            target.write(source.read())
    except Exception as exc:  # fsspec/botocore raise many types: name the URI either way
        raise SystemExit(
            f"Cannot download the configuration archive {conf_source}: {type(exc).__name__}: {exc}"
        ) from exc
    return local_path


def main(argv: list[str] | None = None) -> int:
    from fruits_kedro.__main__ import main as kedro_main

    conf_source, rest = split_conf_source(list(sys.argv[1:] if argv is None else argv))
    with tempfile.TemporaryDirectory(prefix="fruits_kedro_conf_") as folder:
        args = rest if conf_source is None else [CONF_SOURCE_OPTION, localise(conf_source, folder), *rest]
        print(f"fruits_kedro: kedro run {' '.join(args)}", flush=True)
        try:
            kedro_main(args)
        except SystemExit as exc:  # click (standalone mode) exits with the run's status
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
