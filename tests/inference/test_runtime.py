"""feature_extraction.runtime: auto, by the CPU's 8-bit instructions."""

import logging

import pytest

from fruits_kedro.inference import runtime
from fruits_kedro.inference.runtime import fast_int8_instructions, resolve_runtime

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni avx_vnni amx_int8\n"
SKYLAKE_SERVER = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimdrdm dcpop asimddp\n"
CORTEX_A72 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"


@pytest.mark.parametrize(
    ("cpuinfo", "instructions"),
    [
        (SAPPHIRE_RAPIDS, ["avx512_vnni", "avx_vnni"]),
        (SKYLAKE_SERVER, []),  # AVX-512 without VNNI: INT8 gains little there
        (GRAVITON2, ["asimddp"]),
        (CORTEX_A72, []),
        ("", []),
        ("model name\t: avx512_vnni in a name is not a flag\n", []),
    ],
)
def test_fast_int8_instructions_are_read_from_the_cpu_flags(cpuinfo, instructions):
    assert fast_int8_instructions(cpuinfo) == instructions


def test_auto_picks_int8_where_the_cpu_has_fast_8_bit_dot_products_and_says_so_once(caplog, monkeypatch):
    monkeypatch.setattr(runtime, "_runtime_choices_logged", set())
    with caplog.at_level(logging.INFO, logger="fruits_kedro.inference.runtime"):
        assert resolve_runtime("auto", "cpu", SAPPHIRE_RAPIDS) == "onnx_int8"
        assert resolve_runtime("auto", "cpu", SAPPHIRE_RAPIDS) == "onnx_int8"
        assert resolve_runtime("auto", "cpu", GRAVITON2) == "onnx_int8"
        assert resolve_runtime("auto", "cpu", SKYLAKE_SERVER) == "onnx"
        assert resolve_runtime("auto", "cpu", CORTEX_A72) == "onnx"
    messages = [r.getMessage() for r in caplog.records]
    assert (
        messages.count(
            "feature_extraction.runtime auto: onnx_int8 (this CPU has fast 8-bit dot products (avx512_vnni, "
            "avx_vnni); set onnx or onnx_int8 to choose)"
        )
        == 1
    )
    assert len(messages) == 3 and "auto: onnx (this CPU lacks fast 8-bit dot products" in messages[2]


def test_explicit_runtimes_stay_as_they_are():
    for explicit in ("onnx", "onnx_int8", "keras"):
        assert resolve_runtime(explicit, "cpu", SKYLAKE_SERVER) == explicit
        assert resolve_runtime(explicit, "cpu", SAPPHIRE_RAPIDS) == explicit


def test_auto_runs_fp32_on_a_gpu(monkeypatch):
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(runtime, "execution_providers", lambda choice: gpu)
    assert resolve_runtime("auto", "auto", SAPPHIRE_RAPIDS) == "onnx"
    monkeypatch.setattr(runtime, "execution_providers", lambda choice: ["CPUExecutionProvider"])
    assert resolve_runtime("auto", "auto", SAPPHIRE_RAPIDS) == "onnx_int8"
