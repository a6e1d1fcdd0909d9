"""lpft: linear probing, fine-tuning and LP-FT with the protocol of Kumar et al. (ICLR 2022)."""

__version__ = "0.1.0"
