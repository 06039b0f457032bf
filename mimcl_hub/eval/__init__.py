"""Evaluation of frozen encoders: weighted kNN (DINO protocol) and the online kNN monitor; linear probe;
``evaluate_encoder`` for saved encoders."""

from .evaluate import evaluate_encoder, push_eval_results, update_model_card
from .knn import KNNMonitor, LabelledImages, extract_features, knn_accuracy, knn_predict, load_knn_datasets
from .linear import fit_linear_probe, linear_probe

__all__ = ["KNNMonitor", "LabelledImages", "evaluate_encoder", "extract_features", "fit_linear_probe", "knn_accuracy",
           "knn_predict", "linear_probe", "load_knn_datasets", "push_eval_results", "update_model_card"]
