"""The CrossI2P network (torch only, no torchvision).

Kept apart as GeoTransformer keeps its parts: encoders per modality
(``image_encoder``, ``point_encoder``), the superpoint/superpixel transformer
(``attention``), matching heads (``matching``), the differentiable pose layer
(``pose``), and the model that wires them (``crossi2p``).
"""
from .config import ModelConfig
from .crossi2p import CrossI2P

__all__ = ["CrossI2P", "ModelConfig"]
