"""Self-supervised training of CrossI2P: losses, GradNorm balancing, trainer."""
