"""Networks: the attribute embedder, the denoising U-Net and the up-scaler."""
from .autoencoder import Autoencoder, AutoencoderConfig, reconstruction_loss
from .embedder import NULL, AttributeEmbedder, EmbedderConfig
from .stats import count_parameters, forward_gmacs
from .unet import UNet, UNetConfig
from .upscaler import Upscaler, UpscalerConfig

__all__ = ["Autoencoder", "AutoencoderConfig", "reconstruction_loss", "NULL", "AttributeEmbedder", "EmbedderConfig",
           "count_parameters", "forward_gmacs", "UNet", "UNetConfig", "Upscaler", "UpscalerConfig"]
