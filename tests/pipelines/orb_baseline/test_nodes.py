import io

import numpy as np
import pytest
from PIL import Image

from fruits_kedro.pipelines.orb_baseline.nodes import (
    build_word_histograms,
    detect_orb_descriptors,
    enhance_grey,
    fit_visual_vocabulary,
    orb_descriptors,
    unpack_bits,
    word_histogram,
)
from tests.params import params

SMALL = {**params("orb_baseline"), "vocabulary_size": 8, "vocabulary_sample_size": 2000, "kmeans_max_iter": 5}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _raw_images(spark, generated_sample, per_split_class: int = 2):
    rows = []
    for split in ("Training", "Test"):
        for folder in sorted((generated_sample / split).iterdir())[:3]:
            for path in sorted(folder.glob("*.jpg"))[:per_split_class]:
                rows.append((str(path), folder.name.replace(" ", "_"), split, path.read_bytes()))
    # A blank photo (ORB finds nothing on a flat image) and a file that is not an image.
    rows.append(("/x/blank.png", "Blank", "Test", _png(np.full((100, 100, 3), 255, np.uint8))))
    rows.append(("/x/broken.jpg", "Broken", "Test", b"not an image"))
    return spark.createDataFrame(rows, "path string, label string, split string, content binary")


def test_enhance_grey_keeps_the_size_and_spreads_the_contrast():
    rng = np.random.default_rng(0)
    dull = (100 + rng.integers(0, 20, (60, 80, 3))).astype(np.uint8)  # low contrast
    grey = enhance_grey(dull, params("orb_baseline"))
    assert grey.shape == (60, 80) and grey.dtype == np.uint8
    assert int(grey.max()) - int(grey.min()) > 20
    for contrast, denoise in (("equalize", "nlmeans"), ("none", "none")):
        assert enhance_grey(dull, {**params("orb_baseline"), "contrast": contrast, "denoise": denoise}).shape == (
            60,
            80,
        )


def test_orb_finds_no_keypoint_on_a_flat_image():
    assert orb_descriptors(np.full((100, 100), 200, np.uint8), params("orb_baseline")).shape == (0, 32)


def test_unpacked_bits_turn_squared_distance_into_hamming_distance():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 256, (2, 32), dtype=np.uint8)
    hamming = int(np.unpackbits(np.bitwise_xor(a, b)).sum())
    bits = unpack_bits(np.stack([a, b]))
    assert bits.shape == (2, 256)
    assert float(((bits[0] - bits[1]) ** 2).sum()) == hamming
    assert np.array_equal(unpack_bits([a.tobytes(), b.tobytes()]), bits)


def test_word_histogram_counts_nearest_words_and_is_zero_without_descriptors():
    zeros, ones = np.zeros(32, np.uint8), np.full(32, 255, np.uint8)
    centres = np.stack([np.zeros(256), np.ones(256), np.full(256, 0.5)]).astype(np.float32)
    histogram = word_histogram([zeros.tobytes(), zeros.tobytes(), ones.tobytes()], centres)
    assert histogram.shape == (3,)
    assert np.allclose(histogram, [2 / 3, 1 / 3, 0])
    assert np.array_equal(word_histogram(None, centres), np.zeros(3))
    assert np.array_equal(word_histogram(np.array([], dtype=object), centres), np.zeros(3))


def test_orb_nodes_give_one_histogram_of_vocabulary_length_per_photo(spark, generated_sample):
    raw = _raw_images(spark, generated_sample)
    descriptors, detection = detect_orb_descriptors(raw, SMALL)
    assert detection["n_undecodable"] == 1
    assert detection["n_images_without_keypoints"] >= 1
    assert "/x/blank.png" in detection["images_without_keypoints_first_20"]
    vocabulary = fit_visual_vocabulary(descriptors, SMALL)
    assert vocabulary["vocabulary_size"] == 8 and np.asarray(vocabulary["centres"]).shape == (8, 256)
    histograms, report = build_word_histograms(descriptors, vocabulary, detection)
    rows = {r.path: r for r in histograms.collect()}
    assert len(rows) == 3 * 2 * 2 + 1  # the blank photo is kept, the broken file is not
    assert {len(r.histogram) for r in rows.values()} == {8}
    assert sum(rows["/x/blank.png"].histogram) == 0 and rows["/x/blank.png"].n_keypoints == 0
    with_keypoints = [r for r in rows.values() if r.n_keypoints > 0]
    assert all(abs(sum(r.histogram) - 1) < 1e-5 for r in with_keypoints)
    assert report["n_images"] == len(rows) and report["vocabulary_size"] == 8
    assert report["featurization_seconds"] > 0


def test_a_vocabulary_larger_than_the_descriptors_names_the_setting(spark):
    frame = spark.createDataFrame(
        [("/a.jpg", "A", "Training", 1, [bytes(32)])],
        "path string, label string, split string, n_keypoints int, descriptors array<binary>",
    )
    with pytest.raises(ValueError, match="orb_baseline.vocabulary_size"):
        fit_visual_vocabulary(frame, SMALL)


@pytest.mark.parametrize(("setting", "value"), [("contrast", "gamma"), ("blur_kernel", 4), ("denoise", "bilateral")])
def test_bad_settings_name_the_parameter(spark, setting, value):
    frame = spark.createDataFrame(
        [("/a.jpg", "A", "Training", b"")], "path string, label string, split string, content binary"
    )
    with pytest.raises(ValueError, match=f"orb_baseline.{setting}"):
        detect_orb_descriptors(frame, {**SMALL, setting: value})


def test_the_vocabulary_is_the_same_whatever_the_partitioning(spark):
    """The same photos give the same words on one core or many: the sample and KMeans' input
    do not depend on how the descriptors were split into partitions."""
    rng = np.random.default_rng(3)
    rows = [
        (f"/Training/c{i % 4}/{i}.jpg", f"c{i % 4}", "Training", 40, [rng.bytes(32) for _ in range(40)])
        for i in range(150)
    ]
    frame = spark.createDataFrame(
        rows, "path string, label string, split string, n_keypoints int, descriptors array<binary>"
    )
    settings = {**SMALL, "vocabulary_sample_size": 1500}
    one, seven = (fit_visual_vocabulary(frame.repartition(n), settings) for n in (1, 7))
    assert one["n_descriptors_sampled"] == seven["n_descriptors_sampled"]
    assert 1000 < one["n_descriptors_sampled"] < 2000 and one["n_descriptors_available"] == 6000
    assert np.array_equal(np.asarray(one["centres"]), np.asarray(seven["centres"]))
