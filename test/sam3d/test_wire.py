"""Wire format of the SAM 3D worker: round trips and strict rejection of anything else (sam3d_ros.sam3d.wire)."""
import msgpack
import numpy as np
import pytest

from sam3d_ros.sam3d import wire
def message(**arrays) -> wire.WireMessage:
    meta = {"seed": 3, "options": {"stage1_only": True}, "x": [1.5, None]}
    return wire.WireMessage("reconstruct", "req-1", meta, arrays)


def header(**override) -> bytes:
    fields = {"proto": wire.PROTOCOL, "v": wire.VERSION, "type": "ping", "id": "a", "meta": {}, "arrays": []}
    fields.update(override)
    return msgpack.packb(fields, use_bin_type=True)


def test_round_trip_of_every_allowed_dtype():
    arrays = {f"a{i}": np.arange(12).astype(np.dtype(code)).reshape(3, 4) for i, code in enumerate(sorted(wire.DTYPES))}
    arrays["image"] = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    arrays["mask"] = np.eye(4, dtype=bool)
    arrays["empty"] = np.zeros((0, 3), np.float32)
    arrays["scalar"] = np.array(2.5)
    frames = wire.encode(message(**arrays))
    decoded = wire.decode([bytes(f) for f in frames])
    assert (decoded.type, decoded.request_id) == ("reconstruct", "req-1")
    assert decoded.meta == {"seed": 3, "options": {"stage1_only": True}, "x": [1.5, None]}
    assert list(decoded.arrays) == list(arrays)
    for name, array in arrays.items():
        assert decoded.arrays[name].dtype == array.dtype and decoded.arrays[name].shape == array.shape
        np.testing.assert_array_equal(decoded.arrays[name], array)
        assert not decoded.arrays[name].flags.writeable  # views on the received bytes


def test_big_endian_and_non_contiguous_arrays_are_sent_as_little_endian_c_order():
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    strided = np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2]
    decoded = wire.decode(wire.encode(message(big=big, strided=strided))).arrays
    assert decoded["big"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(decoded["big"], big)
    np.testing.assert_array_equal(decoded["strided"], strided)


@pytest.mark.parametrize(
    "array", [np.array(["a"]), np.array([object()]), np.zeros(2, np.complex64), np.zeros((1,) * 5)]
)
def test_arrays_that_cannot_go_on_the_wire(array):
    with pytest.raises(wire.WireError):
        wire.encode(message(bad=array))


def test_bad_names_types_and_metadata_are_refused_on_encode():
    with pytest.raises(wire.WireError):
        wire.encode(message(**{"bad name": np.zeros(1)}))
    with pytest.raises(wire.WireError):
        wire.encode(wire.WireMessage("shutdown", "x"))
    with pytest.raises(wire.WireError):
        wire.encode(wire.WireMessage("ping", "x", {"f": object()}))


GOOD_ARRAY = [["a", "<f4", [2]]]


@pytest.mark.parametrize(
    "frames, reason",
    [
        ([], "empty"),
        ([b"\xc1\x00garbage"], "msgpack"),
        ([b"\x92\x01\x02"], "bad header"),  # a msgpack list, not a map
        ([msgpack.packb({"proto": "other", "v": 1})], "bad header"),
        ([header(v=2)], "version 2"),
        ([header(v="1")], "version"),
        ([header(extra=1)], "keys"),
        ([header(type="shutdown")], "unknown message type"),
        ([header(id=5)], "request id"),
        ([header(meta=[1])], "meta"),
        ([header(arrays=GOOD_ARRAY)], "announces 1 arrays but 0"),
        ([header(), b"1234"], "announces 0 arrays but 1"),
        ([header(arrays=GOOD_ARRAY), b"123"], "3 bytes"),
        ([header(arrays=[["a", "|O", [1]]]), b"12345678"], "not allowed"),
        ([header(arrays=[["a", "<f4", [-1]]]), b""], "shape"),
        ([header(arrays=[["a", "<f4", [True]]]), b"1234"], "shape"),
        ([header(arrays=[["a", "<f4", [1, 1, 1, 1, 1]]]), b"1234"], "shape"),
        ([header(arrays=[["a", "<f4", [1 << 30, 1 << 30]]]), b""], "at most"),
        ([header(arrays=[["a b", "<f4", [1]]]), b"1234"], "name"),
        ([header(arrays=[["a", "<f4"]]), b"1234"], "spec"),
        ([header(arrays=[["a", "<f4", [1]], ["a", "<f4", [1]]]), b"1234", b"1234"], "twice"),
        ([header(arrays=[["m", "|b1", [2]]]), b"\x01\x02"], "bool"),
        ([msgpack.packb({"proto": wire.PROTOCOL, "v": 1, "meta": msgpack.ExtType(1, b"x")})], "extension"),
        ([b"\x00" * (wire.MAX_HEADER_BYTES + 1)], "header is"),
        ([header()] + [b""] * (wire.MAX_ARRAYS + 1), "frames"),
        ([12345], "not bytes"),
    ],
)
def test_invalid_messages_raise_one_line_wire_errors(frames, reason):
    with pytest.raises(wire.WireError) as info:
        wire.decode(frames)
    text = str(info.value)
    assert reason in text and "\n" not in text


def test_random_corruption_never_raises_anything_but_wire_error():
    rng = np.random.default_rng(1)
    good = [bytes(f) for f in wire.encode(message(image=np.zeros((4, 5, 3), np.uint8), mask=np.ones((4, 5), bool)))]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(2000):
        frames = [bytearray(f) for f in good]
        for _ in range(rng.integers(1, 4)):
            target = frames[rng.integers(len(frames))]
            action = rng.integers(3)
            if action == 0 and target:
                target[rng.integers(len(target))] = rng.integers(256)
            elif action == 1:
                del target[rng.integers(len(target) + 1):]
            else:
                target.extend(rng.integers(0, 256, rng.integers(1, 8)).astype(np.uint8).tobytes())
        if rng.random() < 0.1:
            frames = frames[: rng.integers(len(frames))]
        try:
            wire.decode([bytes(f) for f in frames])
            outcomes["ok"] += 1
        except wire.WireError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 1000  # the corruption really hit


def test_error_message_is_one_line():
    reply = wire.decode(wire.encode(wire.error_message("r", "line one\nline two " + "x" * 1000, "inference_failed")))
    assert reply.type == "error" and reply.meta["code"] == "inference_failed"
    assert "\n" not in reply.meta["message"] and len(reply.meta["message"]) <= 300
