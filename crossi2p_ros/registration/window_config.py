"""Settings of the window estimator, one dataclass for every stage of it (:mod:`.window`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .image_edges import ImageEdgeConfig
from .lidar_edges import LidarEdgeConfig
from .motion import MotionConfig
from .time_offset import TimeOffsetConfig

# of delta: translation along, and rotation about, the camera optical frame's x (right), y (down), z (forward)
# axes; for a forward-looking camera, rotation about x tilts it (pitch), about y pans it (yaw), about z rolls it
AXES = ("x", "y", "z", "pitch", "yaw", "roll")


@dataclass(frozen=True)
class WindowConfig:
    """Settings of the window estimator (angles [deg], distances [m], pixels of the full-resolution image)."""

    lidar: LidarEdgeConfig = field(default_factory=LidarEdgeConfig)
    image: ImageEdgeConfig = field(default_factory=ImageEdgeConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    time_offset: TimeOffsetConfig = field(default_factory=TimeOffsetConfig)
    # coarse to fine: the robust scale of each level as an angle (times the focal length gives pixels). The
    # finest is about the LiDAR edges' own localisation (a silhouette lies anywhere within half a beam step,
    # 0.1-0.2 deg, of its edge point): a narrower kernel only counts lucky hits. From the truth
    # (benchmarks/window_bias.py) a finest 0.06 deg left the optimum 2.3 / 3.4 / 2.7 cm off (urban, suburban,
    # real KITTI median), 0.16 deg 0.75 / 2.7 / 2.35 cm (docs/benchmarks.md, "Bias")
    sigma_deg: tuple[float, ...] = (1.0, 0.5, 0.25, 0.16)
    # images are worked on at most at this focal length [px] (downscaled, K scaled with them; 0: as they come):
    # the scales above are angles, so a 2-4 K camera's pixels add cost per keyframe, not resolution
    max_focal_px: float = 0.0
    points_per_level: tuple[int, ...] = (600, 800, 1200, 2000)   # edge points per frame and level
    iterations_per_level: int = 8
    contrast_levels: int = 3           # the coarsest levels (the search's) score against their local mean
    rotation_only_levels: int = 2      # the coarsest levels solve for rotation alone (translation barely
                                       # moves far points, and freed it drifts to shrink the projection)
    # the global search runs once per entry, its coarse refinements moving the rotation alone for that many
    # levels, and the finals of all compete on their finest-level score. Rotation first is right where far
    # structure pins it; near a camera (a hall: walls 3.5-5 m away) a translation error turns the rotation
    # that absorbs it into a wrong basin (benchmarks/rigs.py --style indoor: os128 33 % with (2,), 100 % with
    # (0,)), while (0,) alone let real KITTI +-5 deg converge falsely once in 10 (docs/benchmarks.md, "Indoors")
    search_rotation_only_levels: tuple[int, ...] = (2, 0)
    min_edge_points: int = 30          # keyframes with fewer edge points in the image are skipped
    # across-ring edges only from sensors whose rings are this close (lidar_edges.ring_gap_deg): the
    # silhouette lies anywhere within one gap of its point, and from a 32-beam sensor's 1.3 deg they pull the
    # pose off (from the truth, synthetic 32-beam drives end 0.5-0.7 deg off with them, 0.04 deg without;
    # real nuScenes single frames 3.5 deg median against 1.3 deg), while from a 64-beam's 0.33-0.43 deg they
    # pin the vertical (real KITTI without them: 0.22 deg / 3.1 cm against 0.15 deg / 2.1 cm). Set between the
    # two measured sensors; docs/benchmarks.md, "Coarse rings"
    max_across_ring_gap_deg: float = 0.8
    # an edge point may stand for the interval between its pair's two beams (LidarEdges.spans), where the
    # silhouette may lie anywhere: it then scores at the best of samples spread over it at most this many robust
    # scales apart (only where the interval is longer than the level's kernel). 0, the default: at its bisector
    # alone. Measured at 2.0 (docs/benchmarks.md, "Edge intervals"): synthetic +-10 deg 1.28 -> 0.92 cm, real
    # nuScenes frames 33 -> 18 cm, but real KITTI windows 0.66 -> 1.53 cm and solves 1.56x as long; off until a
    # second real drive says which way it goes
    interval_spacing: float = 0.0
    max_interval_samples: int = 8      # ... and at most this many
    # a rolling shutter's readout [s]: the camera's rows exposed top to bottom over this long, the middle one at
    # its exposure time; a moving keyframe's edges are then each moved along its twist to their row's time, the
    # row taken where the start projects them and again where the solve ended (:meth:`.keyframe.Keyframe.rolled`,
    # WindowEstimator.solve). 0: a global shutter
    rolling_shutter_s: float = 0.0
    # global search around the start: the calib protocol's bounds (DESIGN.md)
    search_rot_deg: float = 10.0
    search_trans_m: float = 0.5
    grid_rot_step_deg: float = 2.0
    grid_trans_step_m: float = 0.1     # the bound's slack (one step); the grids' own steps are below
    # translation grids, coarse to fine: (level scored at, step [m], radius [m]) around the best so far
    translation_stages: tuple[tuple[int, float, float], ...] = ((2, 0.1, 0.5),)   # one stage measured best
    compensation_depths: tuple[float, ...] = (0.5, 1.0, 2.0)   # of the median depth (see translation_grid)
    search_points: int = 100           # per frame, for scoring the grids
    candidates: int = 12               # distinct rotations refined at the coarse levels ...
    finalists: int = 5                 # ... of which this many get a translation grid, keeping this many each
                                       # (4: real KITTI +-10 deg 80 % success, 1 false convergence; 5: 90 %, 0)
    search_passes: int = 2             # passes of the global search (solve, step 4) ...
    research_trans_m: float = 0.1      # ... another one while the best pose lies farther than this from the last
    distinct_deg: float = 1.5          # candidates closer than this are the same basin
    middle_levels: int = 2             # all searched poses are refined this many levels past the rotation-only ones ...
    finals: int = 3                    # ... and the best this many of them on to the finest level
    duplicate_rot_deg: float = 0.05    # poses refined to within this of a better one are the same optimum
    duplicate_trans_m: float = 0.005
    # uncertainty
    resamples: int = 6                 # random halves of the window refined from its pose (resampled_covariance)
    resample_levels: int = 2           # ... at this many of the finest levels
    correlated_points: float = 8.0     # edge points that count as one independent sample
    floor_rot_deg: float = 0.08        # added in quadrature: the edge model's own bias (converged held-out
    floor_trans_m: float = 0.015       # synthetic windows end 0.02-0.11 deg / 0.5-3.8 cm off, docs/benchmarks.md)
    converged_rot_deg: float = 0.2     # "converged": no rotation direction with more sigma than this ...
    converged_trans_m: float = 0.02    # ... and no translation direction with more than this
    min_keyframes_converged: int = 4   # ... and at least this many keyframes: the halves of the window must be
                                       # able to disagree (resampled_covariance); 1-2 keyframes can agree on a
                                       # wrong pose with a tight curvature (benchmarks/window_convergence.py)
    unconstrained_rot_deg: float = 2.0  # an axis with more sigma than this is reported as unconstrained
    unconstrained_trans_m: float = 0.2
    min_score: float = 0.1             # mean per-frame score at the finest level for a result to count
    ambiguity: float = 0.05            # a distinct pose scoring within this fraction of the best: ambiguous
    rival_rounds: int = 4              # ... once refined this many more rounds at the finest level (_settle_rivals)
    # without any prior: the usual mounts (camera level with the LiDAR's horizon, any heading), one per
    # this many degrees of yaw (each one's search region, search_rot_deg, covers the gaps and the tilt)
    mount_yaw_step_deg: float = 10.0
    mount_finalists: int = 2           # best-scoring mounts solved with the global search ...
    mount_search_trans_m: float = 1.0  # ... over this translation radius (a camera can sit a metre from the LiDAR)
    mount_translation_stages: tuple[tuple[int, float, float], ...] = ((2, 0.2, 1.0), (2, 0.1, 0.3))
    # ... unless the window's motion gives the camera's rotation (:mod:`.motion`): then that one is solved,
    # with the network's proposals within this of it (the mounts, and proposals that contradict the
    # direction of travel, are not)
    motion_gate_deg: float = 20.0
    seed: int = 0
    # threads a solve splits its keyframes over (the compiled kernels release the GIL); the result is the same
    # for any number. On our 2-core CPU two take 0.70-0.80 of one's time (9.3 -> 6.5 and 8.5 -> 6.8 s medians,
    # real KITTI, 20 keyframes from +-10 deg; refinement gains less than the grids: between kernel calls it is
    # Python; docs/benchmarks.md, "Two threads a solve")
    threads: int = 2
