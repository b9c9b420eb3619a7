"""Evaluation: a domain classifier and the metrics built on it (FID, KID, accuracy, precision/recall, PSNR/SSIM)."""
from .classifier import Classifier, ClassifierConfig
from .evaluate import (
           evaluate_autoencoder,
           evaluate_classifier,
           evaluate_generator,
           evaluate_upscaler,
)
from .metrics import (
           fid,
           frechet_distance,
           kid,
           precision_recall,
           psnr,
           ssim,
           topk_accuracy,
)
from .train import train_classifier

__all__ = ["Classifier", "ClassifierConfig", "evaluate_autoencoder", "evaluate_classifier", "evaluate_generator",
           "evaluate_upscaler", "fid", "frechet_distance", "kid", "precision_recall", "psnr", "ssim", "topk_accuracy",
           "train_classifier"]
