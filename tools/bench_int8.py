"""INT8 against FP32 on real photos: the evaluation pipeline run once per runtime.

Each run is ``kedro run --pipelines evaluation`` on the same photos (a Training and a Test
split) with one backbone, in a throw-away copy of the project: the featurization's images/s,
the Test accuracy and macro F1 of the same logistic regression on either runtime's features.
FP32 stays the default unless INT8's accuracy is within 0.5 point of it.

    python -m tools.bench_int8 ../shared/fruits360-sample
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tools.bench_project import make_project, subprocess_env

RUNTIMES = ("onnx", "onnx_int8")
TOLERATED_POINTS = 0.5


def run_evaluation(project: Path, params: str) -> None:
    """``kedro run --pipelines evaluation --params <params>`` in ``project``, as a user runs it."""
    command = [str(Path(sys.executable).parent / "kedro"), "run", "--pipelines", "evaluation", "--params", params]
    subprocess.run(command, cwd=project, env=subprocess_env(), check=True, capture_output=True, text=True)


def compare(
    photos: Path, work: Path, backbone: str = "mobilenet_v2", extra_params: str = "", run=run_evaluation
) -> dict:
    """The evaluation's figures of ``backbone`` on each runtime, and the verdict
    (``extra_params``: more ``--params``, e.g. a smaller ``evaluation.input_size``; ``run``: how
    the evaluation is run, given a project folder and the ``--params`` string)."""
    figures = {}
    for runtime in RUNTIMES:
        project = make_project(work / f"int8_{runtime}")
        params = f"images_root={photos},evaluation.feature_sets=[{backbone}],feature_extraction.runtime={runtime}"
        run(project, f"{params},{extra_params}" if extra_params else params)
        metrics = json.loads((project / "data" / "08_reporting" / "evaluation_metrics.json").read_text())
        entry = metrics["feature_sets"][backbone]
        figures[runtime] = {key: entry[key] for key in ("accuracy", "macro_f1", "images_per_second", "n_features")}
    fp32, int8 = figures["onnx"], figures["onnx_int8"]
    change = round(100 * (int8["accuracy"] - fp32["accuracy"]), 2)
    return {
        "backbone": backbone,
        "photos": str(photos),
        "runtimes": figures,
        "accuracy_change_points": change,
        "speed_up": round(int8["images_per_second"] / fp32["images_per_second"], 2),
        "int8_could_be_default": change >= -TOLERATED_POINTS,
    }


def format_comparison(result: dict) -> str:
    lines = [
        f"INT8 vs FP32 ({result['backbone']}, evaluation pipeline on {result['photos']}):",
        "| runtime | Test accuracy | macro F1 | PCA k | featurization images/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for runtime, entry in result["runtimes"].items():
        lines.append(
            f"| {runtime} | {entry['accuracy']:.1%} | {entry['macro_f1']:.3f} | {entry['n_features']} "
            f"| {entry['images_per_second']:.0f} |"
        )
    verdict = "could be the default" if result["int8_could_be_default"] else "stays optional: FP32 is the default"
    lines.append(
        f"INT8: {result['speed_up']:.2f}x the images/s, accuracy {result['accuracy_change_points']:+.1f} points "
        f"({verdict}; the rule tolerates -{TOLERATED_POINTS} point)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="a folder of <Split>/<Class>/*.jpg with Training and Test")
    parser.add_argument("--backbone", default="mobilenet_v2")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fruits_kedro_int8_") as work:
        result = compare(args.photos.resolve(), Path(work), args.backbone)
    print(format_comparison(result))
    return result


if __name__ == "__main__":
    main()
