"""The picamera2 adapter's own logic against a stand-in that behaves like Picamera2.

Real capture is verified on a Pi; here the stand-in follows picamera2's documented
behaviour: configurations as dicts, `capture_array` arrays whose memory order follows
the DRM format name (RGB888 is B,G,R in memory), jobs with `wait(job, timeout)`,
controls that must be advertised, IndexError when libcamera has no camera.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edge.capture import CameraTimeout, open_camera
from edge.capture.picam import AF_MODE_CONTINUOUS, Picamera2Camera, load_picamera2, to_rgb
from edge.config import CameraConfig
from edge.errors import EXIT_MISSING, DeviceMissing
from tests.conftest import WriteConfig, run_edge

SENSORS = {
    "imx708": {"Model": "imx708", "PixelArraySize": (4608, 2592)},  # Camera Module 3 (AF)
    "imx219": {"Model": "imx219", "PixelArraySize": (3280, 2464)},  # Camera Module 2
}


def scene(w: int, h: int) -> np.ndarray:
    """What the sensor sees, as R, G, B: R grows left to right, G top to bottom, B fixed."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, :, 0] = (np.arange(w) % 256)[None, :]
    rgb[:, :, 1] = (np.arange(h) % 256)[:, None]
    rgb[:, :, 2] = 7
    return rgb


class Job:
    def __init__(self, result: np.ndarray) -> None:
        self.result = result


class FakePicamera2:
    """Stand-in for picamera2.Picamera2 (the parts the adapter uses)."""

    cameras: ClassVar[list[str]] = ["imx708"]
    busy: ClassVar[bool] = False
    stalled: ClassVar[bool] = False
    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= len(self.cameras):
            raise IndexError("list index out of range")  # what picamera2 raises with no camera
        if self.busy:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        model = self.cameras[camera_num]
        self.camera_properties: dict[str, Any] = dict(SENSORS[model])
        self.camera_controls: dict[str, Any] = {"ExposureTime": (75, 11766829, None)}
        if model == "imx708":
            self.camera_controls["AfMode"] = (0, 2, 0)
        self.camera_config: dict[str, Any] | None = None
        self.controls: dict[str, Any] = {}
        self.started = False
        self.closed = False
        self.calls: list[str] = []
        FakePicamera2.instances.append(self)

    @classmethod
    def global_camera_info(cls) -> list[dict[str, Any]]:
        return [{"Model": m, "Num": i} for i, m in enumerate(cls.cameras)]

    def _config(
        self, use_case: str, main: dict[str, Any] | None, default_size: tuple[int, int], **kw: Any
    ) -> dict[str, Any]:
        main = dict(main or {})
        main.setdefault("format", "XBGR8888" if use_case == "preview" else "BGR888")
        main.setdefault("size", default_size)
        return {"use_case": use_case, "main": main, "buffer_count": kw.get("buffer_count", 4)}

    def create_preview_configuration(
        self, main: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        return self._config("preview", main, (640, 480), **kw)

    def create_still_configuration(
        self, main: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        return self._config("still", main, self.camera_properties["PixelArraySize"], **kw)

    def configure(self, config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        fmt = config["main"]["format"]
        if fmt not in ("RGB888", "BGR888", "XRGB8888", "XBGR8888", "YUV420"):
            raise RuntimeError(f"Invalid format {fmt}")
        self.camera_config = config
        self.calls.append("configure")

    def set_controls(self, controls: dict[str, Any]) -> None:
        for key in controls:
            if key not in self.camera_controls:
                raise RuntimeError(f"Control {key} is not advertised by libcamera")
        self.controls.update(controls)
        self.calls.append("set_controls")

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        self.calls.append("start")

    def _array(self) -> np.ndarray:
        assert self.camera_config is not None
        main = self.camera_config["main"]
        w, h = main["size"]
        rgb = scene(w, h)
        fmt = main["format"]
        if fmt == "RGB888":
            return np.ascontiguousarray(rgb[:, :, ::-1])  # B, G, R in memory
        if fmt == "BGR888":
            return rgb  # R, G, B in memory
        pad = np.full((h, w, 1), 255, np.uint8)
        if fmt == "XRGB8888":
            return np.concatenate([rgb[:, :, ::-1], pad], axis=2)  # B, G, R, X
        return np.concatenate([rgb, pad], axis=2)  # XBGR8888: R, G, B, X

    def capture_array(self, name: str = "main", wait: bool | None = None) -> Any:
        if not self.started:
            raise RuntimeError("Camera is not running")
        assert name == "main"
        arr = self._array()
        return Job(arr) if wait is False else arr

    def wait(self, job: Job, timeout: float | None = None) -> np.ndarray:
        if self.stalled:
            time.sleep(timeout or 0)
            raise TimeoutError("job timed out")
        return job.result

    def stop(self) -> None:
        self.started = False
        self.calls.append("stop")

    def close(self) -> None:
        self.closed = True
        self.calls.append("close")


@pytest.fixture(autouse=True)
def fresh_fake() -> None:
    FakePicamera2.cameras = ["imx708"]
    FakePicamera2.busy = False
    FakePicamera2.stalled = False
    FakePicamera2.instances = []


def pcfg(**kw: Any) -> CameraConfig:
    base: dict[str, Any] = {"backend": "picamera2", "width": 1280, "height": 960, "settle_s": 0.5}
    return CameraConfig(**{**base, **kw})


@pytest.mark.parametrize("fmt", ["RGB888", "BGR888", "XRGB8888", "XBGR8888"])
def test_channel_order_per_format(fmt: str) -> None:
    fake = FakePicamera2()
    fake.configure(fake.create_preview_configuration(main={"size": (64, 32), "format": fmt}))
    fake.start()
    out = to_rgb(fake.capture_array(), fmt)
    assert out.shape == (32, 64, 3) and out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, scene(64, 32))


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="YUV420"):
        to_rgb(np.zeros((4, 4, 3), np.uint8), "YUV420")


def test_adapter_configures_focuses_settles_and_captures_rgb() -> None:
    slept: list[float] = []
    cam = open_camera(pcfg(), picamera2_class=FakePicamera2)
    assert isinstance(cam, Picamera2Camera)
    cam._sleep = slept.append  # type: ignore[method-assign,assignment]
    cam.start()
    fake = FakePicamera2.instances[-1]
    assert fake.camera_config is not None
    assert fake.camera_config["use_case"] == "preview"
    assert fake.camera_config["main"] == {"size": (1280, 960), "format": "RGB888"}
    assert fake.controls == {"AfMode": AF_MODE_CONTINUOUS}
    assert fake.calls[:3] == ["configure", "set_controls", "start"]
    assert slept == [0.5]
    frames = cam.burst(3)
    assert [f.rgb.shape for f in frames] == [(960, 1280, 3)] * 3
    assert np.array_equal(frames[0].rgb, scene(1280, 960))  # B,G,R memory turned into R,G,B
    assert cam.last_frame_monotonic == frames[-1].monotonic
    d = cam.describe()
    assert d["model"] == "imx708" and d["autofocus"] is True and d["size"] == [1280, 960]
    json.dumps(d)
    cam.stop()
    assert fake.calls[-2:] == ["stop", "close"] and fake.closed
    cam.stop()  # twice is fine


def test_no_autofocus_on_fixed_focus_module_or_when_off() -> None:
    FakePicamera2.cameras = ["imx219"]
    cam = Picamera2Camera(pcfg(settle_s=0), picamera2_class=FakePicamera2)
    cam.start()
    assert FakePicamera2.instances[-1].controls == {} and cam.autofocus is False
    cam.stop()
    FakePicamera2.cameras = ["imx708"]
    cam = Picamera2Camera(pcfg(settle_s=0, autofocus=False), picamera2_class=FakePicamera2)
    cam.start()
    assert FakePicamera2.instances[-1].controls == {}
    cam.stop()


def test_no_camera_attached_is_device_missing() -> None:
    FakePicamera2.cameras = []
    with pytest.raises(DeviceMissing, match="no camera attached") as err:
        open_camera(pcfg(), picamera2_class=FakePicamera2)
    assert err.value.exit_code == EXIT_MISSING
    # constructing directly (no probe) hits picamera2's IndexError: same clear error
    cam = Picamera2Camera(pcfg(), picamera2_class=FakePicamera2)
    with pytest.raises(DeviceMissing, match="ribbon cable"):
        cam.start()


def test_busy_camera_and_bad_configuration() -> None:
    FakePicamera2.busy = True
    with pytest.raises(DeviceMissing, match="another process"):
        Picamera2Camera(pcfg(), picamera2_class=FakePicamera2).start()
    FakePicamera2.busy = False

    class NoConfigure(FakePicamera2):
        def configure(self, config: dict[str, Any]) -> None:
            raise RuntimeError("Failed to configure: sensor mode not found")

    cam = Picamera2Camera(pcfg(), picamera2_class=NoConfigure)
    with pytest.raises(DeviceMissing, match="could not configure"):
        cam.start()
    assert FakePicamera2.instances[-1].closed  # the half-opened camera is released


def test_stalled_capture_times_out() -> None:
    cam = Picamera2Camera(pcfg(settle_s=0, frame_timeout_s=0.2), picamera2_class=FakePicamera2)
    cam.start()
    ok = cam.capture()
    FakePicamera2.stalled = True
    with pytest.raises(CameraTimeout, match="stalled"):
        cam.capture()
    assert cam.last_frame_monotonic == ok.monotonic
    cam.stop()


def test_capture_before_start() -> None:
    with pytest.raises(DeviceMissing, match="before start"):
        Picamera2Camera(pcfg(), picamera2_class=FakePicamera2).capture()


def test_picamera2_not_installed_here() -> None:
    """On this (non-Pi) machine the real import fails with a message that says what to do."""
    with pytest.raises(DeviceMissing, match="replay") as err:
        load_picamera2()
    assert "picamera2" in str(err.value) and err.value.exit_code == EXIT_MISSING


def test_missing_camera_exit_3_from_the_command_line(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """`edge doctor` with no camera: exit 3 and a camera line that says why."""
    for camera, says in [
        ({"backend": "picamera2"}, "picamera2"),
        ({"backend": "replay", "replay_path": str(tmp_path / "no-such-dir")}, "does not exist"),
    ]:
        conf = write_config(camera=camera)
        r = run_edge("--config", str(conf), "doctor", "--json")
        assert r.returncode == EXIT_MISSING, r.stderr
        assert "Traceback" not in r.stderr
        line = next(c for c in json.loads(r.stdout) if c["check"] == "camera")
        assert line["ok"] is False and says in line["detail"] and "DeviceMissing" in line["detail"]
