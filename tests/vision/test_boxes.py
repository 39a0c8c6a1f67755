"""Box geometry on tiny hand-made arrays: letterbox and back, NMS, YOLO decoding."""

from __future__ import annotations

import numpy as np
import pytest

from citywatch.vision.boxes import (
    Letterbox,
    batched_nms,
    compute_letterbox,
    decode_yolo,
    letterbox,
    nms,
    unletterbox_boxes,
)

# --- letterbox -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_hw", "expected", "resized_hw"),
    [
        # 200 rows × 100 cols into 640: scale min(640/200, 640/100) = 3.2 -> 640×320, 160 columns each side.
        ((200, 100), Letterbox(scale=3.2, pad_x=160.0, pad_y=0.0, size=(640, 640)), (640, 320)),
        # Landscape: scale 3.2, 323.2 rows round to 323; 317 rows of padding, round(158.5 - 0.1) = 158 on top.
        ((101, 200), Letterbox(scale=3.2, pad_x=0.0, pad_y=158.0, size=(640, 640)), (323, 640)),
        # Python round is half-to-even, as in Ultralytics: 101 × 2.5 = 252.5 -> 252 rows; (640-252)/2 = 194.
        ((101, 256), Letterbox(scale=2.5, pad_x=0.0, pad_y=194.0, size=(640, 640)), (252, 640)),
        # Already the input size: no resize, no padding.
        ((640, 640), Letterbox(scale=1.0, pad_x=0.0, pad_y=0.0, size=(640, 640)), (640, 640)),
        # Smaller than the input is scaled up (scaleup=True).
        ((320, 320), Letterbox(scale=2.0, pad_x=0.0, pad_y=0.0, size=(640, 640)), (640, 640)),
    ],
)
def test_compute_letterbox(image_hw: tuple[int, int], expected: Letterbox, resized_hw: tuple[int, int]) -> None:
    lb, resized = compute_letterbox(image_hw, (640, 640))
    assert lb == expected
    assert resized == resized_hw


def test_letterbox_places_the_resized_image_between_grey_bars() -> None:
    image = np.full((200, 100, 3), 7, dtype=np.uint8)
    out, lb = letterbox(image, (640, 640))
    assert out.shape == (640, 640, 3)
    assert out.dtype == np.uint8
    assert lb == Letterbox(scale=3.2, pad_x=160.0, pad_y=0.0, size=(640, 640))
    assert (out[:, :160] == 114).all()
    assert (out[:, 480:] == 114).all()
    assert (out[:, 160:480] == 7).all()


def test_letterbox_rounds_the_split_padding_like_ultralytics() -> None:
    image = np.zeros((101, 200, 3), dtype=np.uint8)
    out, lb = letterbox(image, (640, 640), color=50)
    # 323 image rows from row 158; 158 grey rows above, 159 below.
    assert (out[:158] == 50).all()
    assert (out[158 : 158 + 323] == 0).all()
    assert (out[158 + 323 :] == 50).all()
    assert lb.pad_y == 158.0


def test_letterbox_into_a_non_square_input() -> None:
    lb, resized = compute_letterbox((480, 854), (384, 640))
    assert lb.scale == pytest.approx(min(384 / 480, 640 / 854))
    assert resized == (360, 640)
    assert (lb.pad_x, lb.pad_y) == (0.0, 12.0)


@pytest.mark.parametrize("bad_size", [(0, 640), (640, -1)])
def test_letterbox_rejects_bad_sizes(bad_size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="size"):
        compute_letterbox((10, 10), bad_size)


def test_letterbox_rejects_an_empty_image() -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_letterbox((0, 10), (640, 640))


def test_letterbox_type_checks_itself() -> None:
    with pytest.raises(ValueError, match="scale"):
        Letterbox(scale=0.0, pad_x=0.0, pad_y=0.0, size=(640, 640))
    with pytest.raises(ValueError, match="pads"):
        Letterbox(scale=1.0, pad_x=-1.0, pad_y=0.0, size=(640, 640))


# --- unletterbox -----------------------------------------------------------------------------------------

LB_200x100 = Letterbox(scale=3.2, pad_x=160.0, pad_y=0.0, size=(640, 640))


def test_unletterbox_maps_input_pixels_back_to_frame_pixels() -> None:
    boxes = np.array(
        [
            [160, 0, 480, 640],  # the whole resized image -> the whole frame
            [192, 32, 224, 64],  # (192 - 160) / 3.2 = 10 ... (64 - 0) / 3.2 = 20
        ],
        dtype=np.float32,
    )
    out = unletterbox_boxes(boxes, LB_200x100, (200, 100))
    np.testing.assert_allclose(out, [[0, 0, 100, 200], [10, 10, 20, 20]], atol=1e-5)
    assert out.dtype == np.float32
    assert out is not boxes
    np.testing.assert_array_equal(boxes[1], [192, 32, 224, 64])  # input untouched


def test_unletterbox_clips_to_the_frame() -> None:
    boxes = np.array([[100, -10, 600, 700]], dtype=np.float64)
    out = unletterbox_boxes(boxes, LB_200x100, (200, 100, 3))
    np.testing.assert_allclose(out, [[0, 0, 100, 200]])
    assert out.dtype == np.float64


def test_unletterbox_divides_each_axis_by_its_own_resize_ratio() -> None:
    # 854×480 at 640: scale 0.7494, resized to 640×360 (rounded), so y scales by exactly 360/480 = 0.75.
    lb, resized = compute_letterbox((480, 854), (640, 640))
    assert resized == (360, 640) and lb.pad_y == 140.0
    out = unletterbox_boxes(np.array([[0.0, 140.0, 640.0, 500.0]]), lb, (480, 854))
    np.testing.assert_allclose(out, [[0, 0, 854, 480]], atol=1e-9)


def test_unletterbox_of_no_boxes() -> None:
    out = unletterbox_boxes(np.empty((0, 4), dtype=np.float32), LB_200x100, (200, 100))
    assert out.shape == (0, 4)


def test_unletterbox_rejects_a_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        unletterbox_boxes(np.zeros((2, 5)), LB_200x100, (200, 100))


def test_letterbox_then_unletterbox_is_identity_on_box_corners() -> None:
    lb, (new_h, new_w) = compute_letterbox((480, 854), (640, 640))
    frame_boxes = np.array([[10.0, 20.0, 300.0, 470.0], [0.0, 0.0, 854.0, 480.0]])
    # The picture is resized to new_w × new_h exactly, so each axis maps by its own ratio.
    ratio = np.array([new_w / 854, new_h / 480, new_w / 854, new_h / 480])
    in_input = frame_boxes * ratio + [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]
    np.testing.assert_allclose(unletterbox_boxes(in_input, lb, (480, 854)), frame_boxes, atol=1e-9)


# --- NMS -------------------------------------------------------------------------------------------------

A = [0, 0, 10, 10]
B = [1, 0, 11, 10]  # IoU(A, B) = 90 / 110 = 0.818
C = [20, 20, 30, 30]  # far from everything
D = [0, 0, 10, 10]  # same place as A


def test_nms_keeps_the_best_of_overlapping_boxes_highest_score_first() -> None:
    boxes = np.array([A, B, C, D], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], dtype=np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [3, 2])


def test_batched_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    boxes = np.array([A, B, C, D], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], dtype=np.float32)
    classes = np.array([0, 0, 0, 1])
    # D (class 1) cannot suppress A (class 0); A suppresses B; C is alone.
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5), [3, 0, 2])


def test_nms_is_greedy_a_suppressed_box_suppresses_nothing() -> None:
    # A overlaps B and B overlaps C (IoU 1/3 each), A and C do not touch: greedy keeps A and C.
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.3), [0, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.4), [0, 1, 2])


def test_nms_suppresses_only_above_the_threshold() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=np.float32)  # IoU exactly 0.5
    scores = np.array([0.9, 0.8], dtype=np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 1])
    np.testing.assert_array_equal(nms(boxes, scores, 0.49), [0])


def test_nms_of_a_long_chain_matches_greedy() -> None:
    # 50 boxes, each 2 px right of the one before: neighbours overlap (IoU 0.67 > 0.5) but boxes 4 px apart
    # do not (IoU 0.43), so greedy keeps every second box. A one-pass "suppressed by any better box" would
    # keep only the first.
    x = np.arange(50, dtype=np.float32) * 2
    boxes = np.stack([x, np.zeros_like(x), x + 10, np.full_like(x, 10)], axis=1)
    scores = np.linspace(1.0, 0.5, 50, dtype=np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), np.arange(0, 50, 2))


def test_nms_of_nothing() -> None:
    kept = nms(np.empty((0, 4), dtype=np.float32), np.empty(0, dtype=np.float32), 0.5)
    assert kept.shape == (0,)
    assert kept.dtype == np.int64


@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "message"),
    [
        (np.zeros((2, 4)), np.zeros(3), np.zeros(2), "scores"),
        (np.zeros((2, 4)), np.zeros(2), np.zeros(3), "class_ids"),
        (np.zeros((2, 3)), np.zeros(2), np.zeros(2), r"\(N, 4\)"),
    ],
)
def test_nms_rejects_mismatched_arrays(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        batched_nms(boxes, scores, classes, 0.5)


# --- decode_yolo -----------------------------------------------------------------------------------------


def _raw_output() -> np.ndarray:
    """(4 + 3 classes) × 5 anchors; columns are anchors."""
    anchors = [
        # cx, cy, w, h, score0, score1, score2
        [50, 50, 20, 20, 0.90, 0.10, 0.00],  # class 0 @ .90 -> kept
        [52, 50, 20, 20, 0.80, 0.00, 0.00],  # class 0 @ .80, IoU .82 with the first -> suppressed
        [52, 50, 20, 20, 0.10, 0.85, 0.20],  # class 1 @ .85, same place but another class -> kept
        [200, 200, 10, 10, 0.20, 0.25, 0.10],  # best .25 is not above conf .25 -> dropped
        [300, 100, 40, 20, 0.30, 0.00, 0.60],  # class 2 @ .60 -> kept
    ]
    return np.array(anchors, dtype=np.float32).T


def test_decode_yolo_filters_labels_and_suppresses() -> None:
    xyxy, confidence, class_id = decode_yolo(_raw_output(), conf=0.25, iou=0.7)
    np.testing.assert_allclose(xyxy, [[40, 40, 60, 60], [42, 40, 62, 60], [280, 90, 320, 110]])
    np.testing.assert_allclose(confidence, [0.90, 0.85, 0.60])
    np.testing.assert_array_equal(class_id, [0, 1, 2])
    assert [xyxy.dtype, confidence.dtype, class_id.dtype] == [np.dtype(t) for t in ("f4", "f4", "i8")]


def test_decode_yolo_caps_at_max_det_keeping_the_best() -> None:
    _, confidence, class_id = decode_yolo(_raw_output(), conf=0.25, iou=0.7, max_det=2)
    np.testing.assert_allclose(confidence, [0.90, 0.85])
    np.testing.assert_array_equal(class_id, [0, 1])


def test_decode_yolo_with_a_loose_iou_keeps_the_same_class_neighbour() -> None:
    _, confidence, _ = decode_yolo(_raw_output(), conf=0.25, iou=0.9)
    np.testing.assert_allclose(confidence, [0.90, 0.85, 0.80, 0.60])


def test_decode_yolo_with_nothing_above_conf() -> None:
    xyxy, confidence, class_id = decode_yolo(_raw_output(), conf=0.95, iou=0.7)
    assert xyxy.shape == (0, 4)
    assert confidence.shape == class_id.shape == (0,)


def test_decode_yolo_rejects_a_batched_output() -> None:
    with pytest.raises(ValueError, match=r"\(4 \+ nc, anchors\)"):
        decode_yolo(_raw_output()[None], conf=0.25, iou=0.7)
