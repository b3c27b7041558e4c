import io

import numpy as np
import pytest
from PIL import Image

from fruits_kedro.imaging.decode import ImageDecodeError, ImageDecoder, ImageTooLargeError, decode_image
from tests.imaging.crafted import incomplete_jpegs

BACKBONE = {"name": "mobilenet_v2", "input_size": 32, "weights": None}
PARAMS = {"max_image_pixels": 89478485, "background": [255, 255, 255]}


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _red(mode: str = "RGB", size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, (200, 10, 10)).convert(mode)


def test_decode_resizes_rgb_jpeg():
    pixels = decode_image(_encode(_red(), "JPEG", quality=95), 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert abs(int(pixels[16, 16, 0]) - 200) < 8 and pixels[16, 16, 1] < 30


def test_transparent_pixels_become_the_background():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgba.putpixel((5, 5), (0, 0, 255, 255))
    pixels = decode_image(_encode(rgba), 10)
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[5, 5]) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P"])
def test_other_modes_convert_to_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    pixels = decode_image(_encode(_red(mode), fmt), 16)
    assert pixels.shape == (16, 16, 3)


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits():
    grey16 = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    pixels = decode_image(_encode(grey16), 8)
    assert pixels.min() == 255


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is a text file, not a photo", "not a decodable image"),
    ],
)
def test_undecodable_bytes_raise_with_a_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data, 32)


def test_truncated_jpeg_is_rejected():
    data = _encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2], 32)


def test_decompression_bomb_is_rejected():
    with pytest.raises(ImageDecodeError, match="decompression-bomb"):
        decode_image(_encode(_red(size=(200, 200))), 32, max_pixels=1000)


def test_decode_valid_keeps_every_valid_image_and_gives_each_bad_one_its_reason():
    decoder = ImageDecoder(16, max_pixels=2000)
    red, green = _encode(_red()), _encode(Image.new("RGB", (20, 20), (10, 200, 10)))
    contents = [b"", red, b"not an image", None, green, _encode(_red(size=(200, 200)))]
    pixels, decoded, reasons = decoder.decode_valid(contents)
    assert decoded == [1, 4] and pixels.shape == (2, 16, 16, 3)
    # The valid images' pixels are theirs, in order, whatever failed around them.
    assert pixels[0, 8, 8].tolist() == [200, 10, 10] and pixels[1, 8, 8].tolist() == [10, 200, 10]
    assert reasons[1] is None and reasons[4] is None
    assert reasons[0] == "empty file" and reasons[3] == "file could not be read"
    assert reasons[2].startswith("not a decodable image")
    assert "decompression-bomb" in reasons[5]


def test_decoder_takes_its_size_from_the_backbone_and_its_rules_from_the_parameters():
    decoder = ImageDecoder.from_params(
        {"name": "vgg16", "input_size": None}, {"background": [0, 0, 0], "max_image_pixels": 5}
    )
    assert decoder == ImageDecoder(size=100, background=(0, 0, 0), max_pixels=5)


def test_decode_batch_names_the_file_that_fails():
    decoder = ImageDecoder(16)
    good = _encode(_red(), "PNG")
    batch = decoder.decode_batch(["/a.png", "/b.png"], [good, good])
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
    with pytest.raises(ImageDecodeError, match=r"^/bad\.jpg: not a decodable image"):
        decoder.decode_batch(["/a.png", "/bad.jpg"], [good, b"garbage"])


def test_shrinking_averages_instead_of_aliasing():
    # A one-pixel black/white checkerboard shrunk 8x must come out mid-grey everywhere;
    # point-sampling interpolation would give pure black or white.
    board = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(board, "L").convert("RGB")
    pixels = decode_image(_encode(image), 32)
    assert np.abs(pixels.astype(int) - 127).max() <= 2


def test_enlarging_matches_bilinear_interpolation():
    # Fruits-360's 100 px photos go to 224 px: the result is Pillow's bilinear within rounding.
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8))
    expected = np.asarray(image.resize((224, 224), Image.Resampling.BILINEAR), dtype=int)
    assert np.abs(decode_image(_encode(image), 224).astype(int) - expected).max() <= 1


def _halves(size=(60, 30)) -> Image.Image:
    """Left half red, right half blue: any rotation or mirror shows."""
    image = Image.new("RGB", size, (220, 20, 20))
    image.paste((20, 20, 220), (size[0] // 2, 0, size[0], size[1]))
    return image


def test_exif_orientation_is_applied_before_resizing():
    stored = _halves()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; show it rotated 90 degrees clockwise
    tagged = _encode(stored, "JPEG", quality=100, exif=exif.tobytes())
    upright = decode_image(_encode(stored.transpose(Image.Transpose.ROTATE_270)), 32).astype(int)
    sideways = decode_image(_encode(stored), 32).astype(int)
    decoded = decode_image(tagged, 32).astype(int)
    assert np.abs(decoded - upright).mean() < 8
    assert np.abs(decoded - sideways).mean() > 40  # the test tells the two apart


def test_the_reason_for_an_undecodable_file_is_the_same_on_every_run():
    reasons = {decode_reason(b"not an image at all") for _ in range(3)}
    assert len(reasons) == 1
    assert " at 0x" not in reasons.pop()


def decode_reason(data: bytes) -> str:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, 32)
    return str(caught.value)


def _halves(size=(1200, 800)) -> Image.Image:
    """Red on the left, blue on the right, with a gradient so that a shift shows."""
    width, height = size
    x = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    pixels = np.where(np.arange(width)[None, :, None] < width // 2, [200, 20, 20], [20, 20, 200]) + x
    return Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).astype(np.uint8))


@pytest.mark.parametrize(
    ("fmt", "mode"), [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "I;16")]
)
def test_a_reduced_decode_of_a_large_photo_gives_the_full_decodes_pixels(fmt, mode):
    image = _halves()
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    elif mode == "P":
        image = image.quantize(16)
    else:
        image = image.convert(mode)
    data = _encode(image, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    full = decode_image(data, 64).astype(np.int16)
    reduced = decode_image(data, 64, reduce=True).astype(np.int16)
    assert reduced.shape == full.shape == (64, 64, 3)
    assert np.abs(reduced - full).mean() < 2.0
    assert np.abs(reduced - full)[:, 4:-4].max() < 24  # away from the sharp middle edge


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_reduced_decode_still_turns_a_rotated_photo_upright(fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the left half ends up on top
    data = _encode(_halves(), fmt, exif=exif)
    for reduce in (False, True):
        pixels = decode_image(data, 64, reduce=reduce)
        top, bottom = pixels[8, 32], pixels[56, 32]
        assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0], (reduce, top, bottom)


def test_an_image_over_the_pixel_limit_raises_its_own_error():
    with pytest.raises(ImageTooLargeError, match=r"decompression-bomb limit 1000 pixels\): 200x200"):
        decode_image(_encode(_red(size=(200, 200)), "JPEG"), 32, max_pixels=1000, reduce=True)


@pytest.fixture
def photo(generated_sample):
    return sorted(generated_sample.rglob("*.jpg"))[0]


@pytest.mark.parametrize("name", ["grey_9000.jpg", "half_grey.jpg"])
def test_a_jpeg_whose_header_promises_more_than_its_data_holds_is_truncated(photo, name):
    """A 633-byte file declaring 9,000 x 9,000 would be a grey photo, and a real photo whose
    header says twice its height would get a grey bottom half."""
    decode_image(photo.read_bytes(), 32)  # whole, it decodes
    with pytest.raises(ImageDecodeError, match=r"^not a decodable image: truncated"):
        decode_image(incomplete_jpegs(photo)[name], 32)


def test_a_jpeg_cut_in_half_gets_the_same_reason(photo):
    data = photo.read_bytes()
    with pytest.raises(ImageDecodeError, match=r"^not a decodable image: truncated"):
        decode_image(data[: len(data) // 2], 32)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"progressive": True},
        {"optimize": True},
        {"subsampling": 0, "quality": 100},
        {"quality": 5},
        {"exif": Image.Exif()},
        {"restart_marker_blocks": 1},
    ],
    ids=["baseline", "progressive", "optimized", "444-q100", "q5", "exif", "restart-markers"],
)
@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_whole_jpegs_decode_to_their_own_pixels(mode, options):
    """The end-marker check never turns a whole image away, nor changes a pixel of it."""
    image = Image.effect_noise((97, 61), 60).convert(mode)
    data = _encode(image, "JPEG", **options)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(decode_image(data, 61, max_pixels=10**6)[:, :, :], _resized(expected, 61))


def _resized(rgb: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
