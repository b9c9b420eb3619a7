"""Training: one trainer, a task per kind of model, and the run configuration."""
from .config import TrainConfig
from .tasks import AutoencoderTask, DiffusionTask, UpscalerTask
from .trainer import Trainer, TrainingError, ema_decay, lr_factor

__all__ = ["TrainConfig", "AutoencoderTask", "DiffusionTask", "UpscalerTask", "Trainer", "TrainingError", "ema_decay",
           "lr_factor"]
