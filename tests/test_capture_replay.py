"""The replay camera: folders, images, arrays, a FIFO feed, looping, stalls and errors."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.capture import CameraTimeout, open_camera
from edge.capture.camera import Frame
from edge.capture.replay import DEFAULT_SAMPLES, ReplayCamera, ReplayEnded
from edge.config import CameraConfig
from edge.errors import EXIT_MISSING, BadInput, DeviceMissing
from tests.support.faces import FACES, PERSON

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def cfg(path: Path | str, **kw: object) -> CameraConfig:
    return CameraConfig(backend="replay", replay_path=str(path), **kw)  # type: ignore[arg-type]


def solid(
    path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (64, 48), mode: str = "RGB"
) -> None:
    Image.new("RGB", size, rgb).convert(mode).save(path)


def test_bundled_sample_faces_by_default() -> None:
    cam = open_camera(CameraConfig(backend="replay"))
    assert isinstance(cam, ReplayCamera) and cam.path == DEFAULT_SAMPLES
    with cam:
        frames = cam.burst(4)
    names = sorted(p for p in DEFAULT_SAMPLES.iterdir() if p.suffix == ".jpg")
    assert len(names) >= 1
    for i, f in enumerate(frames):
        assert f.rgb.dtype == np.uint8 and f.rgb.ndim == 3 and f.rgb.shape[2] == 3
        assert f.rgb.flags["C_CONTIGUOUS"] and f.index == i
        want = np.asarray(Image.open(names[i % len(names)]).convert("RGB"))
        assert np.array_equal(f.rgb, want)  # sorted, looping, pixels as decoded
    assert [f.monotonic for f in frames] == sorted(f.monotonic for f in frames)


def test_folder_order_colours_and_modes(tmp_path: Path) -> None:
    solid(tmp_path / "b.png", COLOURS[1], mode="RGBA")
    solid(tmp_path / "a.png", COLOURS[0])
    solid(tmp_path / "c.jpg", COLOURS[2])
    solid(tmp_path / "d.png", (128, 128, 128), mode="L")
    (tmp_path / "notes.txt").write_text("not a frame")
    with open_camera(cfg(tmp_path)) as cam:
        got = [cam.capture() for _ in range(5)]
    assert got[0].rgb[0, 0].tolist() == [255, 0, 0]  # R first: RGB order
    assert got[1].rgb[0, 0].tolist() == [0, 255, 0]
    b = got[2].rgb[10, 10].tolist()
    assert b[2] > 240 and b[0] < 15 and b[1] < 15  # JPEG blue, roughly
    assert got[3].rgb[0, 0].tolist() == [128, 128, 128]
    assert got[4].rgb[0, 0].tolist() == [255, 0, 0]  # looped
    assert cam.last_frame_monotonic == got[4].monotonic


def test_a_folder_of_one_persons_photos() -> None:
    person = FACES / PERSON
    with open_camera(cfg(person)) as cam:
        f = cam.capture()
    assert f.rgb.shape[2] == 3 and min(f.size) > 32


def test_large_frames_fit_the_configured_size(tmp_path: Path) -> None:
    solid(tmp_path / "big.png", (10, 20, 30), size=(2000, 1000))
    with open_camera(cfg(tmp_path / "big.png", width=640, height=480)) as cam:
        f = cam.capture()
    assert f.size == (640, 320)


def test_animated_gif_is_a_short_video(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in COLOURS]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=40)
    with open_camera(cfg(tmp_path / "clip.gif", replay_loop=False)) as cam:
        got = [cam.capture().rgb[0, 0].tolist() for _ in range(3)]
        with pytest.raises(ReplayEnded) as err:
            cam.capture()
    assert got == [list(c) for c in COLOURS]
    assert err.value.exit_code == EXIT_MISSING and "replay_loop is false" in str(err.value)


def test_npy_and_npz(tmp_path: Path) -> None:
    arr = np.zeros((3, 20, 30, 3), np.uint8)
    for i in range(3):
        arr[i, :, :, i] = 200
    np.save(tmp_path / "frames.npy", arr)
    np.savez(tmp_path / "frames.npz", frames=arr[::-1])
    with open_camera(cfg(tmp_path / "frames.npy")) as cam:
        assert [cam.capture().rgb[0, 0].tolist() for _ in range(4)] == [
            [200, 0, 0],
            [0, 200, 0],
            [0, 0, 200],
            [200, 0, 0],
        ]
    with open_camera(cfg(tmp_path / "frames.npz")) as cam:
        assert cam.capture().rgb[0, 0].tolist() == [0, 0, 200]
    np.save(tmp_path / "bad.npy", np.zeros((4, 4, 3), np.float32))
    with open_camera(cfg(tmp_path / "bad.npy")) as cam, pytest.raises(BadInput, match=r"bad\.npy"):
        cam.capture()


def test_stall_is_detectable() -> None:
    with open_camera(cfg(DEFAULT_SAMPLES, frame_timeout_s=0.3)) as cam:
        assert isinstance(cam, ReplayCamera)
        ok = cam.capture()
        cam.stall()
        t0 = time.monotonic()
        with pytest.raises(CameraTimeout, match="stalled"):
            cam.capture()
        assert time.monotonic() - t0 >= 0.29
        assert cam.last_frame_monotonic == ok.monotonic  # no frame since
        assert cam.seconds_since_frame() is not None and cam.seconds_since_frame() >= 0.29  # type: ignore[operator]
        assert cam.describe()["stalled"] is True
        cam.stall(False)
        assert cam.capture().index == 1


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_fifo_feed_and_writer_stall(tmp_path: Path) -> None:
    fifo = tmp_path / "cam.fifo"
    os.mkfifo(fifo)
    go_on = threading.Event()

    def writer() -> None:
        with open(fifo, "wb") as w:
            for i in range(2):
                w.write(npy_bytes(np.full((8, 12, 3), i * 50, np.uint8)))
                w.flush()
            go_on.wait(20)  # stalls here: nothing written
            w.write(npy_bytes(np.full((8, 12, 3), 222, np.uint8)))
            w.flush()
            time.sleep(0.5)

    with open_camera(cfg(fifo, frame_timeout_s=0.5)) as cam:
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        assert cam.capture().rgb[0, 0, 0] == 0
        assert cam.capture().rgb.shape == (8, 12, 3)
        with pytest.raises(CameraTimeout):
            cam.capture()
        go_on.set()
        assert cam.capture().rgb[0, 0, 0] == 222
        assert cam.describe()["source"] == "fifo"
        t.join(10)


def test_missing_and_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(DeviceMissing, match="does not exist") as err:
        open_camera(cfg(tmp_path / "nope"))
    assert err.value.exit_code == EXIT_MISSING
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeviceMissing, match="no images"):
        open_camera(cfg(tmp_path / "empty")).start()
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    with pytest.raises(BadInput, match="decoder"):
        open_camera(cfg(tmp_path / "clip.mp4")).start()
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cam = open_camera(cfg(tmp_path / "broken.jpg"))
    cam.start()
    with pytest.raises(BadInput, match=r"broken\.jpg"):
        cam.capture()
    with pytest.raises(DeviceMissing, match="before start"):
        open_camera(cfg(DEFAULT_SAMPLES)).capture()


def test_frame_layout_contract() -> None:
    with open_camera(cfg(DEFAULT_SAMPLES)) as cam:
        f = cam.capture()
    assert isinstance(f, Frame) and abs(f.wall - time.time()) < 60
    assert cam.describe()["backend"] == "replay"


def test_frames_are_fresh_arrays() -> None:
    """Changing one frame's pixels must not change the next loop's frame."""
    with open_camera(cfg(DEFAULT_SAMPLES)) as cam:
        n = len([p for p in DEFAULT_SAMPLES.iterdir() if p.suffix == ".jpg"])
        first = cam.capture()
        want = first.rgb.copy()
        first.rgb[:] = 0
        for _ in range(n - 1):
            cam.capture()
        assert np.array_equal(cam.capture().rgb, want)
