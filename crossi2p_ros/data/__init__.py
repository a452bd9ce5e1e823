"""Datasets and generators: KITTI I/O, synthetic scenes, perturbation protocols (no torch in readers)."""
