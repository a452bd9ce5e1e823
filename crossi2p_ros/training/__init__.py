"""Self-supervised training of CrossI2P: losses, GradNorm balancing, trainer."""
from .config import TrainConfig, build_train_config, load_train_config
from .trainer import Trainer, TrainResult

__all__ = ["TrainConfig", "TrainResult", "Trainer", "build_train_config", "load_train_config"]
