"""INT8 against FP32 on real photos: one evaluation run with both variants of a backbone.

``kedro run --pipelines evaluation`` on the same photos (a Training and a Test split) with
``evaluation.feature_sets: [<backbone>, <backbone>@onnx_int8]``, in a throw-away copy of the
project: both runtimes featurize in the same pass over the decoded photos, each timed by its
own sessions; the Test accuracy and macro F1 of the same logistic regression on either's
features. The verdict is the README's rule: INT8 would be the default where it is within 0.5
point of FP32 and at least 1.5x as fast.

    python -m tools.bench_int8 ../shared/fruits360-sample
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from fruits_kedro.ml.frontier import REQUIRED_SPEED_UP, TOLERATED_ACCURACY
from tools.bench_project import make_project, subprocess_env

RUNTIMES = ("onnx", "onnx_int8")
TOLERATED_POINTS = 100 * TOLERATED_ACCURACY


def run_evaluation(project: Path, params: dict) -> None:
    """``kedro run --pipelines evaluation`` in ``project`` with ``params`` (given through
    ``--config``: ``--params`` cannot pass a list of several feature sets), as a user runs it."""
    import yaml

    config = project / "bench_run.yml"
    config.write_text(yaml.safe_dump({"run": {"params": params}}))
    command = [str(Path(sys.executable).parent / "kedro"), "run", "--pipelines", "evaluation", "--config", str(config)]
    subprocess.run(command, cwd=project, env=subprocess_env(), check=True, capture_output=True, text=True)


def compare(
    photos: Path, work: Path, backbone: str = "mobilenet_v2", extra_params: str = "", run=run_evaluation
) -> dict:
    """The evaluation's figures of ``backbone`` on each runtime, and the verdict
    (``extra_params``: more ``--params``-style settings, e.g. ``evaluation.input_size=112``;
    ``run``: how the evaluation is run, given a project folder and the parameters)."""
    from omegaconf import OmegaConf

    variants = {"onnx": backbone, "onnx_int8": f"{backbone}@onnx_int8"}
    params = OmegaConf.merge(
        OmegaConf.create(
            {"images_root": str(photos), "evaluation": {"feature_sets": list(variants.values()), "include_orb": False}}
        ),
        OmegaConf.from_dotlist([item for item in extra_params.split(",") if item]),
    )
    project = make_project(work / "int8")
    run(project, OmegaConf.to_container(params))
    metrics = json.loads((project / "data" / "08_reporting" / "evaluation_metrics.json").read_text())
    figures = {}
    for runtime, name in variants.items():
        entry = metrics["feature_sets"][name]
        figures[runtime] = {key: entry[key] for key in ("accuracy", "macro_f1", "images_per_second", "n_features")}
        figures[runtime]["accuracy_interval_95"] = entry["accuracy_interval_95"]
    fp32, int8 = figures["onnx"], figures["onnx_int8"]
    change = round(100 * (int8["accuracy"] - fp32["accuracy"]), 2)
    speed_up = round(int8["images_per_second"] / fp32["images_per_second"], 2)
    return {
        "backbone": backbone,
        "photos": str(photos),
        "runtimes": figures,
        "accuracy_change_points": change,
        "speed_up": speed_up,
        "int8_could_be_default": change >= -TOLERATED_POINTS and speed_up >= REQUIRED_SPEED_UP,
    }


def format_comparison(result: dict) -> str:
    lines = [
        f"INT8 vs FP32 ({result['backbone']}, evaluation pipeline on {result['photos']}):",
        "| runtime | Test accuracy | 95% interval | macro F1 | PCA k | featurization images/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for runtime, entry in result["runtimes"].items():
        low, high = entry["accuracy_interval_95"]
        lines.append(
            f"| {runtime} | {entry['accuracy']:.1%} | {low:.1%}-{high:.1%} | {entry['macro_f1']:.3f} "
            f"| {entry['n_features']} | {entry['images_per_second']:.0f} |"
        )
    verdict = "the rule picks INT8" if result["int8_could_be_default"] else "the rule keeps FP32"
    lines.append(
        f"INT8: {result['speed_up']:.2f}x the images/s, accuracy {result['accuracy_change_points']:+.2f} points "
        f"({verdict}: within {TOLERATED_POINTS} point and {REQUIRED_SPEED_UP}x as fast)."
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
