"""Model sources beyond ``builtin``, one module each; importing a module registers its source."""

from lpft.models.sources import file, hf, openclip, timm, torchvision

__all__ = ["file", "hf", "openclip", "timm", "torchvision"]
