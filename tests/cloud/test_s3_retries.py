import json
import subprocess
import sys

from fruits_kedro.cloud.s3_retries import is_s3_url


def _run(code: str) -> dict:
    """``code`` in a fresh interpreter, as a Python worker starts: what it prints, as JSON."""
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_local_reads_and_writes_never_import_s3fs(tmp_path):
    """A local run's workers read photos and write Parquet parts without s3fs and botocore,
    whose import would cost every worker's first task; the retry defaults are set all the same."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"not really a photo")
    code = f"""
import json, sys
import pyarrow as pa
from fruits_kedro.datasets.files import read_files
from fruits_kedro.datasets.spark_parquet import _part_writer
import fsspec.config
assert read_files([{str(photo)!r}], 1.0) == [b"not really a photo"]
written = list(_part_writer({str(tmp_path / "parts")!r}, {{}}, "snappy", 100)([pa.record_batch({{"x": [1, 2]}})]))
print(json.dumps({{
    "rows": written[0].column("rows").to_pylist(),
    "imported": sorted(m for m in ("s3fs", "botocore", "aiobotocore") if m in sys.modules),
    "defaults": fsspec.config.conf["s3"]["config_kwargs"]["retries"],
}}))
"""
    (tmp_path / "parts").mkdir()
    result = _run(code)
    assert result["rows"] == [2]
    assert result["imported"] == []
    assert result["defaults"] == {"total_max_attempts": 5, "mode": "standard"}


def test_an_s3_url_turns_s3fs_own_retries_down_before_its_first_filesystem():
    code = """
import json, sys
from fruits_kedro.cloud.s3_retries import S3FS_RETRIES, use_s3_retry_settings
use_s3_retry_settings("/data/photos/a.jpg", "file:///data/b.jpg")
before = "s3fs" in sys.modules
use_s3_retry_settings("s3://bucket/photos/a.jpg")
import s3fs
print(json.dumps({"before": before, "retries": s3fs.S3FileSystem.retries, "expected": S3FS_RETRIES}))
"""
    result = _run(code)
    assert result["before"] is False
    assert result["retries"] == result["expected"] == 1


def test_no_url_configures_s3fs_as_well():
    code = """
import json
from fruits_kedro.cloud.s3_retries import use_s3_retry_settings
use_s3_retry_settings()
import s3fs
print(json.dumps({"retries": s3fs.S3FileSystem.retries}))
"""
    assert _run(code) == {"retries": 1}


def test_s3_urls_are_told_from_other_paths():
    assert is_s3_url("s3://bucket/key") and is_s3_url("S3A://bucket/key") and is_s3_url("s3n://b/k")
    assert not is_s3_url("/data/s3://odd") and not is_s3_url("file:///data/x") and not is_s3_url("gs://b/k")


def test_a_dropped_connections_unawaited_task_is_not_reported_as_an_error_but_other_errors_are():
    """aiohttp leaves the body-writing task of a request whose connection dropped unawaited;
    the request's own failure is what botocore retries or raises."""
    code = """
import asyncio, json, logging
import fsspec.asyn
from aiohttp.client_exceptions import ClientConnectionResetError
from fruits_kedro.cloud.s3_retries import use_s3_retry_settings
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append([record.name, record.levelname, record.getMessage()])
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.DEBUG)
use_s3_retry_settings()
loop = fsspec.asyn.get_loop()
for error in (ClientConnectionResetError("Cannot write to closing transport"), ValueError("a real bug")):
    context = {"message": "Task exception was never retrieved", "exception": error}
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result()
    loop.call_soon_threadsafe(loop.call_exception_handler, context)
asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result()
print(json.dumps(records))
"""
    records = _run(code)
    dropped = [r for r in records if "Cannot write to closing transport" in r[2]]
    assert [(r[0], r[1]) for r in dropped] == [("fruits_kedro.cloud.s3_retries", "DEBUG")]
    assert ["asyncio", "ERROR", "Task exception was never retrieved"] in records  # the ValueError
