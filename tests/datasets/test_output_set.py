"""OutputSetDataset: a run's outputs are saved apart and become current in one commit."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from kedro.io.core import DatasetError, Version

from fruits_kedro.datasets.output_set import MANIFEST_NAME, OutputSet, OutputSetDataset


def _json(root, name="08_reporting/report.json", run_id=None, **kwargs) -> OutputSetDataset:
    return OutputSetDataset(
        path=str(root),
        dataset={"type": "json.JSONDataset", "filepath": f"{root}/{name}"},
        version=Version(None, run_id) if run_id else None,
        **kwargs,
    )


def _manifest(root) -> dict:
    return json.loads((root / MANIFEST_NAME).read_text())


def test_a_save_outside_a_run_is_current_at_once_and_names_its_run(tmp_path):
    report = _json(tmp_path, run_id="2026-01-01T00.00.00.000Z", run_id_field="run_id")
    report.save({"k": 3})
    assert report.load() == {"k": 3, "run_id": "2026-01-01T00.00.00.000Z"}
    manifest = _manifest(tmp_path)
    assert manifest["run_id"] == "2026-01-01T00.00.00.000Z"
    assert manifest["outputs"] == {"08_reporting/report.json": "08_reporting/runs/2026-01-01T00.00.00.000Z/report.json"}
    assert _json(tmp_path).load()["k"] == 3  # any other reader too


def test_a_held_save_stays_invisible_until_the_set_is_committed(tmp_path):
    _json(tmp_path, run_id="2026-01-01T00.00.00.000Z").save({"k": 3})
    table = _json(tmp_path, "04_feature/table.json", run_id="2026-01-02T00.00.00.000Z")
    report = _json(tmp_path, run_id="2026-01-02T00.00.00.000Z")
    for dataset in (table, report):
        dataset.hold()
    table.save({"rows": 10})
    report.save({"k": 4})
    assert report.load() == {"k": 4}  # the run reads what it saved itself
    assert _json(tmp_path).load() == {"k": 3}  # everyone else: the previous set
    assert not _json(tmp_path, "04_feature/table.json").exists()

    OutputSet(str(tmp_path)).commit(
        "2026-01-02T00.00.00.000Z",
        {
            d.member: f"{d.member.rsplit('/', 1)[0]}/runs/{d.saved_run}/{d.member.rsplit('/', 1)[1]}"
            for d in (table, report)
        },
    )
    assert _json(tmp_path).load() == {"k": 4}
    assert _json(tmp_path, "04_feature/table.json").load() == {"rows": 10}
    assert _manifest(tmp_path)["run_id"] == "2026-01-02T00.00.00.000Z"


def test_a_commit_drops_the_outputs_derived_from_what_it_replaced(tmp_path):
    _json(tmp_path, "a.json", run_id="2026-01-01T00.00.00.000Z").save({"a": 1})
    _json(tmp_path, "b.json", run_id="2026-01-01T00.00.00.000Z").save({"b": 1})
    OutputSet(str(tmp_path)).commit("2026-01-02T00.00.00.000Z", {"a.json": "runs/x/a.json"}, stale=["b.json"])
    assert set(_manifest(tmp_path)["outputs"]) == {"a.json"}
    with pytest.raises(DatasetError):
        _json(tmp_path, "b.json").load()  # no longer current, and not saved in place either


def test_an_older_run_is_loaded_by_its_id(tmp_path):
    _json(tmp_path, run_id="2026-01-01T00.00.00.000Z").save({"k": 3})
    _json(tmp_path, run_id="2026-01-02T00.00.00.000Z").save({"k": 4})
    older = OutputSetDataset(
        path=str(tmp_path),
        dataset={"type": "json.JSONDataset", "filepath": f"{tmp_path}/08_reporting/report.json"},
        version=Version("2026-01-01T00.00.00.000Z", None),
    )
    assert older.load() == {"k": 3}


def test_outputs_saved_in_place_by_earlier_versions_are_read_until_replaced(tmp_path):
    legacy = tmp_path / "08_reporting" / "report.json"
    legacy.parent.mkdir()
    legacy.write_text('{"k": 2}')
    assert _json(tmp_path).load() == {"k": 2}  # nothing committed yet
    _json(tmp_path, run_id="2026-01-01T00.00.00.000Z").save({"k": 3})
    assert not legacy.exists()  # a reader must not take it for current
    assert _json(tmp_path).load() == {"k": 3}


def test_run_folders_no_output_names_are_removed(tmp_path):
    _json(tmp_path, run_id="2026-01-01T00.00.00.000Z").save({"k": 3})
    killed = _json(tmp_path, run_id="2026-01-02T00.00.00.000Z")
    killed.hold()
    killed.save({"k": 4})  # never committed: a killed run
    running = tmp_path / "08_reporting" / "runs" / "2026-01-03T00.00.00.000Z"
    running.mkdir()
    removed = OutputSet(str(tmp_path)).remove_runs(["08_reporting/report.json"], keep=["2026-01-03T00.00.00.000Z"])
    assert removed == [f"{tmp_path}/08_reporting/runs/2026-01-02T00.00.00.000Z"]
    assert sorted(p.name for p in (tmp_path / "08_reporting" / "runs").iterdir()) == [
        "2026-01-01T00.00.00.000Z",
        "2026-01-03T00.00.00.000Z",
    ]
    assert _json(tmp_path).load() == {"k": 3}


def test_pandas_frames_get_a_run_id_column(tmp_path):
    table = OutputSetDataset(
        path=str(tmp_path),
        dataset={"type": "pandas.CSVDataset", "filepath": f"{tmp_path}/table.csv", "save_args": {"index": False}},
        run_id_field="run_id",
        version=Version(None, "2026-01-01T00.00.00.000Z"),
    )
    table.save(pd.DataFrame({"path": ["a.jpg", "b.jpg"]}))
    assert table.load().to_dict("list") == {"path": ["a.jpg", "b.jpg"], "run_id": ["2026-01-01T00.00.00.000Z"] * 2}


def test_a_filepath_outside_the_sets_folder_is_refused_naming_both(tmp_path):
    with pytest.raises(DatasetError, match=r"elsewhere/report.json is not under the set's path .*/data"):
        OutputSetDataset(
            path=str(tmp_path / "data"),
            dataset={"type": "json.JSONDataset", "filepath": f"{tmp_path}/elsewhere/report.json"},
        )


def test_a_commit_file_of_another_kind_is_refused_naming_it(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text('{"something": "else"}')
    with pytest.raises(DatasetError, match=MANIFEST_NAME):
        _json(tmp_path).load()


def test_the_wrapped_type_is_imported_when_used_not_when_the_catalog_is_made(tmp_path):
    """A run creates every output's dataset before its first node: a plot's matplotlib is
    imported by its save (or kedro-viz's preview), not then."""
    import subprocess
    import sys

    code = f"""
import json, sys
from fruits_kedro.datasets import OutputSetDataset
plot = OutputSetDataset(path={str(tmp_path)!r}, dataset={{"type": "matplotlib.MatplotlibDataset",
                        "filepath": {str(tmp_path / "08_reporting" / "scree.png")!r}}})
at_creation = "matplotlib" in sys.modules
has_preview = hasattr(plot, "preview")
pickled = OutputSetDataset(path={str(tmp_path)!r}, dataset={{"type": "pickle.PickleDataset",
                           "filepath": {str(tmp_path / "model.pkl")!r}}})
print(json.dumps([at_creation, has_preview, "matplotlib" in sys.modules, hasattr(pickled, "preview")]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(result) == [False, True, True, False]


def test_kedro_viz_is_shown_the_current_file_and_no_preview_before_a_run(tmp_path):
    report = _json(tmp_path)
    assert report.preview() is None  # nothing current yet: empty, not an error
    assert report._describe()["filepath"] == f"{tmp_path}/08_reporting/report.json"
    _json(tmp_path, run_id="2026-01-01T00.00.00.000Z").save({"k": 3})
    shown = _json(tmp_path)  # as Kedro-Viz makes it, from the catalog
    current = f"{tmp_path}/08_reporting/runs/2026-01-01T00.00.00.000Z/report.json"
    assert shown._describe()["filepath"] == current
    assert json.loads(shown.preview()) == {"k": 3}


def test_a_set_on_remote_storage_is_described_without_a_request():
    remote = OutputSetDataset(
        path="s3://no-such-bucket/fruits",
        dataset={"type": "json.JSONDataset", "filepath": "s3://no-such-bucket/fruits/08_reporting/report.json"},
    )
    assert remote._describe()["filepath"] == "s3://no-such-bucket/fruits/08_reporting/report.json"
