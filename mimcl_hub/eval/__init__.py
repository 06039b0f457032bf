"""Evaluation of frozen encoders: weighted kNN (DINO protocol) and the online kNN monitor."""

from .knn import KNNMonitor, LabelledImages, extract_features, knn_accuracy, knn_predict, load_knn_datasets

__all__ = ["KNNMonitor", "LabelledImages", "extract_features", "knn_accuracy", "knn_predict", "load_knn_datasets"]
