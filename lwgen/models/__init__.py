"""Networks: the attribute embedder, the denoising U-Net and the up-scaler."""
from .embedder import NULL, AttributeEmbedder, EmbedderConfig
from .stats import count_parameters, forward_gmacs
from .unet import UNet, UNetConfig
from .upscaler import Upscaler, UpscalerConfig

__all__ = ["NULL", "AttributeEmbedder", "EmbedderConfig", "count_parameters", "forward_gmacs", "UNet",
           "UNetConfig", "Upscaler", "UpscalerConfig"]
