"""Pinhole views of wide lenses: the fisheye's view keeps its field of view, OpenCV's remap agrees with our
camera model, and the black fill outside the lens's field gives no image edges."""
import cv2
import numpy as np

from crossi2p_ros.camera_views import MAX_HALF_FOV_DEG, Undistorter, pinhole_view, working_view
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


def test_a_2k_image_is_worked_on_at_the_focal_length_asked_with_its_rays_where_they_were():
    """Bright blobs drawn at the projections of known rays in a 2048x1536 image stay, after downscaling, at
    those rays' projections through the working camera (the blobs' centroids, not the K formula, say where)."""
    cam = CameraModel.from_intrinsics(2048, 1536, 1210.0, 1205.0, 1019.3, 771.8)
    rays = np.array([[0.0, 0.0, 1.0], [0.5, -0.3, 1.0], [-0.6, 0.4, 1.0], [0.7, 0.5, 1.0]])
    uv = cam.project(rays)[0]
    u, v = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
    image = np.zeros((cam.height, cam.width), np.float32)
    for x, y in uv:   # a few blobs: Gaussian of 6 px around each projection
        image += np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * 6.0 ** 2))
    valid = np.ones(image.shape, bool)
    valid[:, :100] = False                                  # an unseen strip on the left
    small, work, small_valid = working_view(image, cam, 600.0, valid)
    assert 0.5 * (work.fx + work.fy) <= 600.0 + 0.5 and small.shape == (work.height, work.width)
    su, sv = np.meshgrid(np.arange(work.width), np.arange(work.height))
    for (x, y), expected in zip(uv, work.project(rays)[0]):
        s = work.fx / cam.fx
        near = (np.abs(su - s * x) < 12) & (np.abs(sv - s * y) < 12)
        w = small * near
        centroid = np.array([(w * su).sum(), (w * sv).sum()]) / w.sum()
        assert np.abs(centroid - expected).max() < 0.05, (centroid, expected)
    # the unseen strip stays unseen (and a pixel that averaged any of it is unseen too)
    assert not small_valid[:, : int(100 * work.width / cam.width)].any() and small_valid[:, -1].all()
    # a camera already within the focal length comes back as it is
    same_image, same, same_valid = working_view(image, cam, 1300.0, valid)
    assert same_image is image and same is cam and same_valid is valid


# A wide lens as ROS's camera_calibration fits one with the rational model (k1 k2 p1 p2 k3 k4 k5 k6)
_RATIONAL = np.array([0.35, -0.06, 4e-4, -3e-4, 0.002, 0.72, -0.03, 0.01])


def test_a_rational_polynomial_camera_info_projects_and_undistorts_as_opencv_does():
    """References: OpenCV's own model (cv2.projectPoints with the eight coefficients, its undistortion maps for
    the image) and the points' own directions for the rays back."""
    info = {"width": 1280, "height": 800, "distortion_model": "rational_polynomial", "d": _RATIONAL.tolist(),
            "k": [700.0, 0.0, 641.3, 0.0, 702.0, 398.7, 0.0, 0.0, 1.0]}
    camera = CameraModel.from_camera_info_dict(info)
    assert camera.model == "rational_polynomial" and camera.is_distorted
    rng = np.random.default_rng(3)
    points = np.c_[rng.uniform(-1.2, 1.2, (500, 2)), np.ones(500)] * rng.uniform(2.0, 40.0, (500, 1))
    uv, valid = camera.project(points)
    ref, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), camera.K, _RATIONAL)
    assert valid.sum() > 300
    np.testing.assert_allclose(uv[valid], ref.reshape(-1, 2)[valid], atol=1e-6)
    # the rays back through those pixels are the points' own directions (OpenCV's undistortPoints, a fixed point,
    # leaves this lens's corners 5e-4 off)
    rays = camera.unproject(uv[valid])
    np.testing.assert_allclose(rays[:, :2], points[valid, :2] / points[valid, 2:], atol=1e-9)
    image = rng.integers(0, 255, (800, 1280, 3), dtype=np.uint8)
    maps = cv2.initUndistortRectifyMap(camera.K, _RATIONAL, None, camera.K, (1280, 800), cv2.CV_32FC1)
    np.testing.assert_array_equal(Undistorter()(image, camera), cv2.remap(image, *maps, cv2.INTER_LINEAR))
