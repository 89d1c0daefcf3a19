"""CompressedImage inputs as image_transport_plugins publish them, decoded by ros/conversions.py.

The reference encoders below are written from compressed_depth_image_transport/src/codec.cpp and
compressed_image_transport/src/compressed_publisher.cpp (ros-perception/image_transport_plugins): OpenCV's imencode,
and for compressedDepth a 12-byte ConfigHeader (int32 format 0 = INV_DEPTH, float32 depthParam[2]) before the PNG.
For 32FC1 the PNG holds q = (unsigned short)(A / z + B) with A = Z0 (Z0 + 1), B = 1 - A / depth_max (float
arithmetic), 0 where !(z < depth_max); the decoder gives A / (q - B). 16UC1 is PNG'd as is, values above
depth_max * 1000 zeroed. Defaults: depth_max 10, depth_quantization (Z0) 100, png_level 3, jpeg_quality 95.
"""
import struct

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from sam3d_ros.geometry.types import InputError
from sam3d_ros.ros import conversions

DEPTH_MAX, Z0 = 10.0, 100.0


def _reference_compressed_depth(depth: np.ndarray, encoding: str) -> bytes:
    """The bytes compressed_depth_image_transport's encodeCompressedDepthImage (format png) publishes."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    if encoding == "32FC1":
        a = np.float32(Z0) * (np.float32(Z0) + np.float32(1.0))
        b = np.float32(1.0) - a / np.float32(DEPTH_MAX)
        inverse = np.zeros(depth.shape, np.uint16)
        for index, z in np.ndenumerate(depth.astype(np.float32)):  # the encoder's loop, pixel by pixel
            if z < np.float32(DEPTH_MAX):
                inverse[index] = int(a / z + b)  # float -> unsigned short truncates
        ok, png = cv2.imencode(".png", inverse, params)
        header = struct.pack("<iff", 0, float(a), float(b))
    else:
        raw = depth.astype(np.uint16).copy()
        raw[raw > int(DEPTH_MAX * 1000.0)] = 0
        ok, png = cv2.imencode(".png", raw, params)
        header = struct.pack("<iff", 0, 0.0, 0.0)  # the encoder leaves depthParam unset for 16-bit depth
    assert ok
    return header + png.tobytes()


def _message(fmt: str, data: bytes) -> CompressedImage:
    return CompressedImage(header=Header(frame_id="cam"), format=fmt, data=data)


@pytest.fixture(scope="module")
def metres():
    """Depth of a tilted plane 0.3-9.9 m with NaN holes and a band beyond depth_max."""
    rows, cols = np.mgrid[0:60, 0:80]
    depth = (0.3 + 9.6 * (cols / 79.0) * (0.5 + 0.5 * rows / 59.0)).astype(np.float32)
    depth[10:14, 20:30] = np.nan
    depth[:, 78:] = 12.0  # beyond depth_max: the encoder drops it
    return depth


def test_compressed_depth_16uc1_round_trip_is_exact(metres):
    millimetres = np.where(np.isfinite(metres), np.round(metres * 1000), 0).astype(np.uint16)
    msg = _message("16UC1; compressedDepth png", _reference_compressed_depth(millimetres, "16UC1"))
    depth = conversions.depth_msg_to_metres(msg)
    assert depth.dtype == np.float32 and depth.shape == metres.shape
    kept = (millimetres > 0) & (millimetres <= 10000)
    np.testing.assert_array_equal(depth[kept], millimetres[kept].astype(np.float32) / np.float32(1000))
    assert np.isnan(depth[~kept]).all() and (~kept).sum() == 40 + 2 * 60


def test_compressed_depth_32fc1_round_trip_within_the_quantisation_step(metres):
    msg = _message("32FC1; compressedDepth png", _reference_compressed_depth(metres, "32FC1"))
    depth = conversions.depth_msg_to_metres(msg)
    kept = np.isfinite(metres) & (metres < DEPTH_MAX)
    assert np.isnan(depth[~kept]).all()
    # q is A / z + B truncated: the decoded depth is z or up to one inverse-depth step further, z^2 / (A - z).
    a = Z0 * (Z0 + 1)
    z = metres[kept].astype(np.float64)
    error = depth[kept].astype(np.float64) - z
    assert (error > -1e-5 * z).all() and (error < z**2 / (a - z) + 1e-5 * z).all(), float(np.abs(error).max())
    assert np.abs(error).max() > 1e-4  # really quantised (9.9 m: steps of about 1 cm)


def test_the_package_encoders_publish_what_image_transport_publishes(metres):
    """ros_client publishes with conversions' encoders: byte for byte the reference ones."""
    millimetres = np.where(np.isfinite(metres), np.round(metres * 1000), 0).astype(np.uint16)
    for depth, encoding in ((metres, "32FC1"), (millimetres, "16UC1")):
        msg = conversions.depth_to_compressed_depth_msg(depth, encoding)
        assert msg.format == f"{encoding}; compressedDepth png"
        assert bytes(msg.data) == _reference_compressed_depth(depth, encoding)
    rgb = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    msg = conversions.rgb_to_compressed_msg(rgb, "rgb8", "jpeg")
    assert msg.format == "rgb8; jpeg compressed bgr8"
    assert bytes(msg.data) == cv2.imencode(".jpg", rgb[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def test_older_compressed_depth_formats_are_png():
    millimetres = np.full((8, 8), 750, np.uint16)
    data = _reference_compressed_depth(millimetres, "16UC1")
    for fmt in ("16UC1; compressedDepth", "16UC1"):  # a bare "compressedDepth", or no ';' at all: png
        np.testing.assert_allclose(conversions.depth_msg_to_metres(_message(fmt, data)), 0.75)


def _smooth_rgb() -> np.ndarray:
    rows, cols = np.mgrid[0:48, 0:64]
    return np.stack([cols * 4, rows * 5, 255 - cols * 2], axis=2).astype(np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_compressed_colour_png_is_exact_and_jpeg_close(encoding):
    rgb = _smooth_rgb()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # compressed_image_transport encodes colour as bgr8
    ok, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    np.testing.assert_array_equal(
        conversions.image_msg_to_rgb(_message(f"{encoding}; png compressed bgr8", png.tobytes())), rgb)
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = conversions.image_msg_to_rgb(_message(f"{encoding}; jpeg compressed bgr8", jpeg.tobytes()))
    assert decoded.shape == rgb.shape and np.abs(decoded.astype(int) - rgb).mean() < 3


def test_compressed_colour_channel_order_of_old_formats_and_mono():
    rgb = _smooth_rgb()
    ok, bgr_png = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    ok, rgb_png = cv2.imencode(".png", rgb)  # an encoder that wrote rgb8 pixels without the bgr conversion
    np.testing.assert_array_equal(conversions.image_msg_to_rgb(_message("png", bgr_png.tobytes())), rgb)
    np.testing.assert_array_equal(
        conversions.image_msg_to_rgb(_message("rgb8; png compressed rgb8", rgb_png.tobytes())), rgb)
    grey = rgb[:, :, 1].copy()
    ok, mono = cv2.imencode(".png", grey)
    np.testing.assert_array_equal(
        conversions.image_msg_to_rgb(_message("mono8; png compressed ", mono.tobytes())), np.dstack([grey] * 3))


def _error(msg: CompressedImage, depth: bool = False) -> str:
    with pytest.raises(InputError) as info:
        conversions.depth_msg_to_metres(msg) if depth else conversions.image_msg_to_rgb(msg)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_bad_compressed_data_is_one_clear_line():
    ok, jpeg = cv2.imencode(".jpg", _smooth_rgb())
    garbage = bytes(np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8))
    assert _error(_message("rgb8; jpeg compressed bgr8", b"")) == \
        "compressed colour image (format 'rgb8; jpeg compressed bgr8') has no data"
    assert _error(_message("rgb8; jpeg compressed bgr8", garbage)) == \
        "compressed colour image (format 'rgb8; jpeg compressed bgr8', 3000 bytes) cannot be decoded: not a complete JPEG, PNG or TIFF file"
    truncated = jpeg.tobytes()[: len(jpeg) // 2]
    assert _error(_message("rgb8; jpeg compressed bgr8", truncated)) == \
        f"compressed colour image (format 'rgb8; jpeg compressed bgr8', {len(truncated)} bytes) is a truncated JPEG (no end marker)"
    assert "'yuv422' (format 'yuv422; jpeg compressed bgr8') is not supported" in \
        _error(_message("yuv422; jpeg compressed bgr8", jpeg.tobytes()))
    assert "is a compressedDepth (depth) image" in _error(_message("16UC1; compressedDepth png", jpeg.tobytes()))

    depth_data = _reference_compressed_depth(np.full((8, 8), 500, np.uint16), "16UC1")
    assert _error(_message("16UC1; compressedDepth png", depth_data[:12]), depth=True) == \
        "compressedDepth image (format '16UC1; compressedDepth png') has 12 bytes, not even its 12-byte header and an image"
    assert _error(_message("32FC1; compressedDepth png", depth_data[:12] + garbage), depth=True) == \
        "compressedDepth image (format '32FC1; compressedDepth png', 3000 bytes) cannot be decoded: not a complete JPEG, PNG or TIFF file"
    assert _error(_message("16UC1; compressedDepth rvl", depth_data), depth=True) == \
        "compressedDepth format '16UC1; compressedDepth rvl': codec 'rvl' is not supported (only png; set the publisher's compressedDepth format parameter to png)"
    assert "encoding 'mono8'" in _error(_message("mono8; compressedDepth png", depth_data), depth=True)
    ok, colour_png = cv2.imencode(".png", _smooth_rgb())
    assert "not one 16-bit channel" in _error(_message("16UC1; compressedDepth png", depth_data[:12] + colour_png.tobytes()), depth=True)
    ok, depth_jpeg = cv2.imencode(".jpg", np.full((8, 8), 120, np.uint8))
    assert "a lossy JPEG cannot carry depth" in _error(_message("16UC1; jpeg compressed ", depth_jpeg.tobytes()), depth=True)


def test_plain_compressed_16bit_png_depth():
    """image_transport's `compressed` plugin on a 16UC1 topic writes a 16-bit PNG (format '16UC1; png compressed ')."""
    millimetres = np.array([[0, 500], [1250, 65000]], np.uint16)
    ok, png = cv2.imencode(".png", millimetres)
    depth = conversions.depth_msg_to_metres(_message("16UC1; png compressed ", png.tobytes()))
    np.testing.assert_allclose(depth, [[np.nan, 0.5], [1.25, 65.0]])
