"""What a feature vector depends on, so that an incremental run reuses a previous run's
features only when they were computed exactly as this run would compute them.

Every featurized row carries the settings it was made with (``feature_settings``: the
backbone, its input size, the identity of its weights, the decoder's version and settings).
A run whose settings differ from the stored ones recomputes every image, and says so once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

SETTINGS_COLUMN = "feature_settings"
IMAGE_KEY = ("path", "size", "modified")  # an image is "seen" when all three match
# Bump whenever decoding gives other pixels for the same file (2: EXIF orientation applied).
DECODER_VERSION = 2


@dataclass(frozen=True)
class ReusableFeatures:
    """What an incremental run may reuse: the previous features (``frame``), or nothing.

    A wrapper because a Kedro node may not output None, and "nothing" is the common case.
    """

    frame: Any = None  # a Spark DataFrame, or None


def feature_settings(
    backbone_params: dict[str, Any],
    preprocessing_params: dict[str, Any],
    runtime: str | None = None,
    int8_model: bytes | None = None,
) -> str:
    """The settings that shape a feature vector, as one deterministic string.

    The runtime counts only where it changes the features beyond rounding (INT8: with the
    quantized model's digest, ``int8_model``), so that FP32 features stay reusable across the
    keras and onnx runtimes.
    """
    from fruits_kedro.inference.registry import get_backbone, resolve_input_size
    from fruits_kedro.inference.torch_export import weights_digest
    from fruits_kedro.inference.weights import weights_source_digest

    backbone = get_backbone(backbone_params["name"])
    weights = backbone_params["weights"]
    weights_identity = weights_digest if backbone.framework == "torch" else weights_source_digest
    settings = {
        "backbone": backbone.name,
        "input_size": resolve_input_size(backbone, backbone_params["input_size"]),
        # A file's hash where there is one (ImageNet cache, a path, the random seed), else its name.
        "weights": weights_identity(backbone, weights) or str(weights),
        "decoder": DECODER_VERSION,
        "background": [int(c) for c in preprocessing_params["background"]],
    }
    if runtime == "onnx_int8":
        settings["quantized"] = "int8"
        settings["int8_model"] = hashlib.sha256(int8_model).hexdigest()[:16] if int8_model else None
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def reusable_features(previous, settings: str):
    """The previous run's features if they were made with ``settings``, else None."""
    missing = [c for c in (*IMAGE_KEY, SETTINGS_COLUMN) if c not in previous.columns]
    if missing:
        logger.warning("Previous features lack %s: featurizing every image", ", ".join(missing))
        return None
    stored = previous.select(SETTINGS_COLUMN).limit(1).collect()
    if stored and stored[0][0] != settings:
        logger.warning(
            "Feature settings changed since the previous run (%s, now %s): featurizing every image",
            stored[0][0],
            settings,
        )
        return None
    return previous
