"""lwgen: light-weight class-conditional image generation."""
__version__ = "0.1.0"
