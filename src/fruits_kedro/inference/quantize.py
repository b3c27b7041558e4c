"""Driver side, runtime ``onnx_int8``: a backbone's ONNX model with INT8 weights and activations.

ONNX Runtime's static quantization (QDQ format, weights per channel, activation ranges from the
percentiles of a calibration set) turns the FP32 export into a model that runs the same graph
contract (uint8 pixels in, features out) with integer kernels. The calibration set is photos of
the first run that needs the model, decoded by the run's own decoder, so the ranges are those the
network will see. The result is cached beside the FP32 exports, keyed by the FP32 model, the
number of calibration photos and the versions that shape it, and reused by every later run (so
an incremental run's new features and the ones it reuses come from one model); the executors
run it like any ONNX model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from fruits_kedro.inference.model_cache import onnx_cache_dir, write_cached_model

logger = logging.getLogger(__name__)

# Part of the cache key: bump it whenever quantize_int8 makes a different model.
QUANTIZATION_VERSION = 3
CALIBRATION_BATCH = 16


def quantize_int8(fp32_model: bytes, calibration: np.ndarray) -> bytes:
    """The INT8 model of ``fp32_model``, calibrated on ``calibration`` (N, s, s, 3) uint8 pixels."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ValueError("INT8 calibration needs at least one decodable photo")
    if len(calibration) > CALIBRATION_BATCH:  # percentile calibration stacks batches: one size only
        calibration = calibration[: len(calibration) - len(calibration) % CALIBRATION_BATCH]
    input_name = ort.InferenceSession(fp32_model, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Batches(CalibrationDataReader):
        """One batch per ``collect_data``: ONNX Runtime keeps every activation of a call until its
        histograms are made, so the driver's memory stays flat in the number of photos."""

        def __init__(self) -> None:
            self.set_range(0, len(calibration))

        def __len__(self) -> int:
            return len(calibration)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._batches: Iterator[np.ndarray] = iter(
                calibration[i : i + CALIBRATION_BATCH] for i in range(start_index, end_index, CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory(prefix="fruits_kedro_int8_") as folder:
        fp32_path, prepared, quantized = (Path(folder) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32_path.write_bytes(fp32_model)
        # Shape inference and graph optimisation first, as ONNX Runtime's quantization guide says.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            # Histograms merged call by call (the option serves every calibration method).
            extra_options={"CalibStridedMinMax": min(len(calibration), CALIBRATION_BATCH)},
        )
        return quantized.read_bytes()


def int8_model_path(fp32_model: bytes, name: str, n_photos: int) -> Path:
    """Where the INT8 model of ``fp32_model`` calibrated on ``n_photos`` photos is cached."""
    from importlib.metadata import version

    fp32_digest = hashlib.sha256(fp32_model).hexdigest()
    key = json.dumps([QUANTIZATION_VERSION, version("onnxruntime"), version("onnx"), fp32_digest, n_photos])
    return onnx_cache_dir() / f"{name}_int8_{n_photos}_{hashlib.sha256(key.encode()).hexdigest()[:20]}.onnx"


def existing_int8_model(fp32_model: bytes, name: str, n_photos: int) -> bytes | None:
    """The cached INT8 model of ``fp32_model``, or None where none was made yet."""
    path = int8_model_path(fp32_model, name, n_photos)
    return path.read_bytes() if path.is_file() else None


def cached_int8_model(fp32_model: bytes, calibration: Callable[[], np.ndarray], name: str, n_photos: int) -> bytes:
    """:func:`quantize_int8` at most once per machine, FP32 model and number of photos.

    The first run calibrates (``calibration()``: up to ``n_photos`` of its photos, decoded) and
    every later run reuses that model, whatever its photos: so features of an incremental run
    and those it reuses come from one model. Delete the cached file to calibrate again.
    """
    path = int8_model_path(fp32_model, name, n_photos)
    if path.is_file():
        logger.info("INT8 model for %s from the cache %s", name, path)
        return path.read_bytes()
    pixels = calibration()
    model = quantize_int8(fp32_model, pixels)
    logger.info("Quantized %s to INT8 on %d calibration photos (%.1f MB)", name, len(pixels), len(model) / 1e6)
    write_cached_model(path, model)
    return model
