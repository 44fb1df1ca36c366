"""Trained models on images: scoring a test set (metrics, RealBlur alignment, score files, paired statistics),
the study's evaluation stages, the costs of every model, restoring one's own photos."""
