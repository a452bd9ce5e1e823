"""Network configuration: every size and constant of the model, with defaults, in one place."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the CrossI2P network.

    Image sizes are pixels of the network input (the camera image is resized
    and undistorted to this); point counts are per sample. The defaults fit
    CPU training; the i2p protocol of DESIGN.md evaluates at 160x512 pixels.
    """

    image_height: int = 160
    image_width: int = 512
    num_points: int = 8192          # LiDAR points fed to the network per sample
    num_superpoints: int = 256      # FPS centres; each point joins its nearest centre
    knn: int = 32                   # neighbours pooled into each superpoint
    point_feat: int = 64            # per-point feature width
    image_channels: tuple[int, int, int] = (32, 64, 128)  # CNN widths at strides 2, 4, 8
    coarse_stride: int = 8          # superpixels = cells of the stride-8 feature map
    fine_stride: int = 2            # fine matching at half resolution
    fine_window: int = 8            # fine search window side, in fine pixels, centred on the cell
    d_model: int = 128              # transformer width
    fine_dim: int = 64              # width of the fine (point-level) embeddings
    num_heads: int = 4
    num_layers: int = 4             # interleaved self/cross layers
    image_self_attention: str = "softmax"  # superpixel self-attention: softmax | linear (cheaper, see attention.py)
    pos_scale_m: float = 20.0       # length scale of the 3-D positional encoding [m]
    init_temperature: float = 0.1   # InfoNCE temperature at start (learned)
    pose_iterations: int = 4        # unrolled Gauss-Newton steps in the pose layer

    def __post_init__(self) -> None:
        if self.image_self_attention not in ("softmax", "linear"):
            raise ValueError(f"image_self_attention {self.image_self_attention!r}: use softmax or linear")

    @property
    def coarse_shape(self) -> tuple[int, int]:
        return self.image_height // self.coarse_stride, self.image_width // self.coarse_stride

    @property
    def fine_shape(self) -> tuple[int, int]:
        return self.image_height // self.fine_stride, self.image_width // self.fine_stride

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_channels"] = list(self.image_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        d = dict(d)
        if "image_channels" in d:
            d["image_channels"] = tuple(d["image_channels"])
        return cls(**d)
