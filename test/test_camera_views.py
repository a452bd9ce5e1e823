"""Pinhole views of wide lenses: the fisheye's view keeps its field of view, OpenCV's remap agrees with our
camera model, and the black fill outside the lens's field gives no image edges."""
import cv2
import numpy as np

from crossi2p_ros.camera_views import MAX_HALF_FOV_DEG, Undistorter, pinhole_view
from crossi2p_ros.data.synth import SynthConfig, SynthSequence
from crossi2p_ros.geometry import CameraModel
from crossi2p_ros.registration.image_edges import detect_edges

# a wide Kannala-Brandt lens with non-square pixels: corners ~85 deg off axis
FISHEYE = CameraModel.from_intrinsics(1280, 800, 500.0, 510.0, 650.0, 395.0, np.array([0.01, -0.002, 0.0005, 0.0]),
                                      "equidistant")


def _off_axis_deg(camera: CameraModel, uv: np.ndarray) -> np.ndarray:
    ray = camera.unproject(uv)
    return np.degrees(np.arctan2(np.linalg.norm(ray[:, :2], axis=1), ray[:, 2]))


def test_a_fisheyes_pinhole_view_keeps_its_horizontal_field_up_to_sixty_degrees():
    view = pinhole_view(FISHEYE)
    edges = np.array([[-0.5, view.cy], [view.width - 0.5, view.cy]])
    # the nearer of the view's image edges on the principal row lies 60 deg off axis (the other a little more)
    assert abs(_off_axis_deg(view, edges).min() - MAX_HALF_FOV_DEG) < 1e-6
    # the lens's own K as a pinhole would keep far less: 650 px / 500 px is 52 deg
    same_k = CameraModel(FISHEYE.width, FISHEYE.height, FISHEYE.K)
    assert _off_axis_deg(same_k, edges).max() < 53.0
    assert abs(view.fy / view.fx - FISHEYE.fy / FISHEYE.fx) < 1e-12      # non-square pixels stay so
    # lenses that fit a pinhole of their own K keep it
    plumb = CameraModel.from_intrinsics(1241, 376, 700.0, 700.0, 620.0, 188.0, np.array([-0.1, 0.01, 0, 0, 0]),
                                        "plumb_bob")
    assert np.array_equal(pinhole_view(plumb).K, plumb.K)


def test_the_remap_puts_each_view_pixel_where_our_camera_model_projects_its_ray():
    undistort = Undistorter()
    view = undistort.target(FISHEYE)
    # an image whose every pixel encodes its own (u, v): after the remap each view pixel carries its source
    v, u = np.mgrid[0:FISHEYE.height, 0:FISHEYE.width].astype(np.float32)
    remapped = undistort(np.dstack([u, v, np.zeros_like(u)]), FISHEYE)
    rng = np.random.default_rng(0)
    uv = np.c_[rng.uniform(50, view.width - 50, 500), rng.uniform(50, view.height - 50, 500)].round()
    source = remapped[uv[:, 1].astype(int), uv[:, 0].astype(int), :2]
    expected, ok = FISHEYE.project(view.unproject(uv))
    inside = ok & (source[:, 0] > 1) & (source[:, 1] > 1)
    assert inside.mean() > 0.8
    assert np.abs(source[inside] - expected[inside]).max() < 0.05


def test_the_black_fill_outside_a_fisheyes_field_gives_no_image_edges():
    seq = SynthSequence(SynthConfig(frames=1, seed=9980, style="urban", camera_model="fisheye",
                                    image_width=640, image_height=400))
    undistort = Undistorter()
    image = undistort(seq.frame(0).image, seq.camera)
    valid = undistort.valid_region(seq.camera)
    assert valid is not None and 0.02 < (~valid).mean() < 0.5          # the view has black crescents
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    boundary = cv2.dilate((~valid).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    unmasked = detect_edges(grey)
    masked = detect_edges(grey, valid=valid)
    assert (unmasked.upright | unmasked.level)[boundary].sum() > 100     # the crescents' outline is an edge ...
    assert not (masked.upright | masked.level)[~valid].any()             # ... which the lens's region leaves out
