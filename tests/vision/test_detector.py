"""The ONNX detector: load errors on tiny hand-built models, batching on a fake session, the shipped model on
real parking-lot frames at the edge."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import supervision as sv

from citywatch.vision.detector import CLASS_NAME, ModelInfo, ModelLoadError, OnnxDetector

REPO = Path(__file__).parents[2]
SHARED = REPO.parent / "shared"
SHIPPED_MODEL = REPO / "models" / "default" / "citywatch-coco-yolo11n.onnx"
PARKING_VAL = SHARED / "data" / "parking_occupancy_kurss" / "images" / "val"
COCO_CAR, COCO_TRUCK = 2, 7

# --- load errors -----------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ModelLoadError, match="not found") as caught:
        OnnxDetector.from_path(missing)
    assert str(missing) in str(caught.value)


def test_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a protobuf")
    with pytest.raises(ModelLoadError, match="expected an ONNX model") as caught:
        OnnxDetector.from_path(path)
    assert str(path) in str(caught.value)


COCO_LIKE_META = {"names": "{0: 'car', 1: 'person'}", "imgsz": "[8, 8]", "stride": "8", "task": "detect"}


def write_tiny_model(
    path: Path,
    input_shape: list[int | str],
    metadata: dict[str, str],
    rows: int = 6,
) -> Path:
    """A real ONNX file: input images (N×3×8×8 unless told) reshaped to N×rows×anchors, like a YOLO head."""
    onnx = pytest.importorskip("onnx", reason="building test models needs the onnx package (train extra)")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "shape"], ["output0"])],
        "tiny",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, ["N", rows, "anchors"])],
        [helper.make_tensor("shape", onnx.TensorProto.INT64, [3], [0, rows, -1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the project allows
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("input_shape", "expected"),
    [
        ([1, 8, 8, 3], "N×3×H×W"),  # NHWC, as a TFLite-style export would have it
        ([1, 3, 64], "N×3×H×W"),
        ([1, 3, 16, 16], r"16×16 but metadata 'imgsz' says \(8, 8\)"),
    ],
)
def test_wrong_input_shape_is_refused(tmp_path: Path, input_shape: list[int | str], expected: str) -> None:
    path = write_tiny_model(tmp_path / "tiny.onnx", input_shape, COCO_LIKE_META)
    with pytest.raises(ModelLoadError, match=expected) as caught:
        OnnxDetector.from_path(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"imgsz": "[8, 8]"}, "no 'names'"),
        ({"names": "{0: 'car'}"}, "no 'imgsz'"),
        ({"names": "{0: 'car', 2: 'bus'}", "imgsz": "[8, 8]"}, "class ids 0..n-1"),
        ({"names": "car, person", "imgsz": "[8, 8]"}, "'names' is not readable"),
        ({"names": "{0: 'car', 1: 'person'}", "imgsz": "[8, 8, 3]"}, "'imgsz' must be"),
    ],
)
def test_missing_or_bad_metadata_is_refused(tmp_path: Path, metadata: dict[str, str], expected: str) -> None:
    path = write_tiny_model(tmp_path / "tiny.onnx", ["N", 3, 8, 8], metadata)
    with pytest.raises(ModelLoadError, match=expected) as caught:
        OnnxDetector.from_path(path)
    assert str(path) in str(caught.value)


def test_output_rows_must_match_the_class_names(tmp_path: Path) -> None:
    three_classes = {**COCO_LIKE_META, "names": "{0: 'car', 1: 'person', 2: 'bus'}"}
    path = write_tiny_model(tmp_path / "tiny.onnx", ["N", 3, 8, 8], three_classes, rows=6)
    with pytest.raises(ModelLoadError, match="4 box rows \\+ 3 classes"):
        OnnxDetector.from_path(path)


def test_a_tiny_valid_model_loads_and_describes_itself(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "tiny.onnx", ["N", 3, 8, 8], COCO_LIKE_META)
    detector = OnnxDetector.from_path(path, threads=1)
    assert detector.info == ModelInfo(
        path=path,
        class_names=("car", "person"),
        input_size=(8, 8),
        version="unknown",
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        batch=None,
    )


def test_a_fixed_batch_model_is_run_in_chunks(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "tiny.onnx", [2, 3, 8, 8], {**COCO_LIKE_META, "citywatch_version": "t1"})
    detector = OnnxDetector.from_path(path, threads=1)
    assert (detector.info.batch, detector.info.version) == (2, "t1")
    images = [np.zeros((8, 8, 3), np.uint8), np.zeros((4, 9, 3), np.uint8), np.zeros((20, 5, 3), np.uint8)]
    results = detector.detect(images)  # 2 + 1 (padded to 2)
    assert len(results) == 3
    assert all(isinstance(r, sv.Detections) for r in results)


# --- batching and geometry on a fake session -------------------------------------------------------------


@dataclass
class FakeTensor:
    name: str
    shape: list[Any]
    type: str = "tensor(float)"


@dataclass
class FakeSession:
    """Answers every image with one 64×64 box centred in the 640×640 input: class 0 at 0.9, class 1 at 0.1."""

    batch: int | str = "batch"
    feeds: list[np.ndarray] = field(default_factory=list)

    def get_inputs(self) -> list[FakeTensor]:
        return [FakeTensor("images", [self.batch, 3, 640, 640])]

    def get_outputs(self) -> list[FakeTensor]:
        return [FakeTensor("output0", [self.batch, 6, 1])]

    def run(self, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert output_names == ["output0"]
        blob = feed["images"]
        self.feeds.append(blob.copy())
        one = np.array([320, 320, 64, 64, 0.9, 0.1], dtype=np.float32).reshape(6, 1)
        return [np.repeat(one[None], blob.shape[0], axis=0)]


def fake_detector(batch: int | None) -> tuple[OnnxDetector, FakeSession]:
    session = FakeSession(batch="batch" if batch is None else batch)
    info = ModelInfo(
        path=Path("fake.onnx"),
        class_names=("car", "person"),
        input_size=(640, 640),
        version="test",
        sha256="0" * 64,
        batch=batch,
    )
    return OnnxDetector(session, info), session  # a duck-typed session: the constructor takes any


def columns(detections: sv.Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """confidence, class_id, class names: optional in supervision's types, always set by the detector."""
    assert detections.confidence is not None and detections.class_id is not None
    return detections.confidence, detections.class_id, np.asarray(detections.data[CLASS_NAME])


def blue(h: int, w: int) -> np.ndarray:
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[..., 0] = 255  # BGR
    return image


def test_dynamic_batch_is_one_run_and_boxes_come_back_in_frame_pixels() -> None:
    detector, session = fake_detector(batch=None)
    tall, wide = blue(200, 100), blue(100, 200)
    results = detector.detect([tall, wide])
    assert [feed.shape for feed in session.feeds] == [(2, 3, 640, 640)]
    # Input box 288..352 both ways. Tall: scale 3.2, 160 px bars left/right -> x (288-160)/3.2 = 40, y 90.
    np.testing.assert_allclose(results[0].xyxy, [[40, 90, 60, 110]], atol=1e-4)
    # Wide: scale 3.2, 160 px bars above/below.
    np.testing.assert_allclose(results[1].xyxy, [[90, 40, 110, 60]], atol=1e-4)
    for result in results:
        confidence, class_id, class_name = columns(result)
        np.testing.assert_allclose(confidence, [0.9])
        np.testing.assert_array_equal(class_id, [0])
        np.testing.assert_array_equal(class_name, ["car"])


def test_the_batch_is_rgb_chw_in_0_1_with_grey_bars() -> None:
    detector, session = fake_detector(batch=None)
    detector.detect([blue(200, 100)])
    blob = session.feeds[0]
    assert blob.dtype == np.float32
    assert blob.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(blob[0, :, 320, 320], [0.0, 0.0, 1.0])  # RGB: blue is the last channel
    np.testing.assert_allclose(blob[0, :, 320, 10], [114 / 255] * 3)  # left bar


def test_fixed_batch_is_chunked_and_the_last_chunk_padded() -> None:
    detector, session = fake_detector(batch=2)
    results = detector.detect([blue(200, 100), blue(100, 200), blue(640, 640)])
    assert [feed.shape[0] for feed in session.feeds] == [2, 2]
    np.testing.assert_allclose(session.feeds[1][1], 114 / 255)  # the unused slot is all grey
    np.testing.assert_allclose(results[2].xyxy, [[288, 288, 352, 352]], atol=1e-4)


def test_detect_threshold_can_be_raised_per_call() -> None:
    detector, _ = fake_detector(batch=None)
    assert len(detector.detect([blue(50, 50)], conf=0.95)[0]) == 0
    empty = detector.detect([blue(50, 50)], conf=0.95)[0]
    assert [column.shape for column in columns(empty)] == [(0,), (0,), (0,)]


def test_detect_of_no_images_runs_nothing() -> None:
    detector, session = fake_detector(batch=None)
    assert detector.detect([]) == []
    assert session.feeds == []


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.zeros((10, 10), np.uint8), "H×W×3"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
    ],
)
def test_detect_rejects_bad_images_by_index(image: np.ndarray, expected: str) -> None:
    detector, _ = fake_detector(batch=None)
    with pytest.raises(ValueError, match=f"image 1 .*{expected}"):
        detector.detect([blue(10, 10), image])


def test_model_info_checks_itself() -> None:
    with pytest.raises(ValueError, match="batch"):
        ModelInfo(Path("m.onnx"), ("car",), (640, 640), "v", "0" * 64, 0)
    with pytest.raises(ValueError, match="class_names"):
        ModelInfo(Path("m.onnx"), (), (640, 640), "v", "0" * 64, None)


# --- the shipped model on real frames (the edge) ---------------------------------------------------------

requires_shared = pytest.mark.skipif(not PARKING_VAL.is_dir(), reason=f"shared test data not present at {PARKING_VAL}")


@pytest.fixture(scope="module")
def shipped() -> Iterator[OnnxDetector]:
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"shipped model missing: {SHIPPED_MODEL} (run python -m citywatch.models.make_default)")
    detector = OnnxDetector.from_path(SHIPPED_MODEL)
    detector.warmup()
    yield detector


@pytest.fixture(scope="module")
def parking_frames() -> list[np.ndarray]:
    import cv2

    frames: list[np.ndarray] = []
    for path in sorted(PARKING_VAL.glob("*.jpg"))[:2]:
        frame = cv2.imread(str(path))
        assert frame is not None, path
        frames.append(frame)
    return frames


def test_shipped_model_describes_itself(shipped: OnnxDetector) -> None:
    info = shipped.info
    assert info.batch is None  # dynamic batch axis
    assert info.input_size == (640, 640)
    assert len(info.class_names) == 80
    assert (info.class_names[COCO_CAR], info.class_names[COCO_TRUCK]) == ("car", "truck")
    assert info.version == "1.0.0"
    assert info.sha256 == hashlib.sha256(SHIPPED_MODEL.read_bytes()).hexdigest()


@requires_shared
def test_shipped_model_finds_cars_in_a_parking_lot(shipped: OnnxDetector, parking_frames: list[np.ndarray]) -> None:
    frame = parking_frames[0]
    height, width = frame.shape[:2]
    detections = shipped.detect([frame])[0]
    confidence, class_id, class_name = columns(detections)
    is_car = class_id == COCO_CAR
    assert is_car.sum() >= 10, f"expected a parking lot full of cars; got {class_name.tolist()}"
    np.testing.assert_array_equal(class_name, np.array(shipped.info.class_names)[class_id])
    xyxy = detections.xyxy
    assert np.all(xyxy[:, :2] >= 0) and np.all(xyxy[:, 2] <= width) and np.all(xyxy[:, 3] <= height)
    assert np.all(xyxy[:, 2] > xyxy[:, 0]) and np.all(xyxy[:, 3] > xyxy[:, 1])
    # A car in this 854×480 view is tens of pixels, not a sliver and not the whole frame.
    car_w, car_h = (xyxy[is_car, 2:] - xyxy[is_car, :2]).T
    assert np.median(car_w) > 15 and np.median(car_h) > 15
    assert np.all(car_w < width / 2) and np.all(car_h < height / 2)
    assert np.all((confidence > 0.25) & (confidence <= 1))
    assert np.all(np.diff(confidence) <= 0)  # highest first


@requires_shared
def test_shipped_model_batch_equals_single_calls(shipped: OnnxDetector, parking_frames: list[np.ndarray]) -> None:
    import cv2

    images = [
        parking_frames[0],  # 854×480
        np.ascontiguousarray(parking_frames[1][60:460, 100:700]),  # 600×400 crop
        cv2.resize(parking_frames[1], (1280, 720)),  # 1280×720
    ]
    batched = shipped.detect(images)
    for image, together in zip(images, batched, strict=True):
        alone = shipped.detect([image])[0]
        assert len(alone) > 0
        (conf_together, class_together, _), (conf_alone, class_alone, _) = columns(together), columns(alone)
        np.testing.assert_array_equal(class_together, class_alone)
        np.testing.assert_allclose(together.xyxy, alone.xyxy, atol=1e-3)
        np.testing.assert_allclose(conf_together, conf_alone, atol=1e-5)
