"""lpft: linear probing, fine-tuning and LP-FT with the protocol of Kumar et al. (ICLR 2022)."""

__version__ = "0.1.0"

# Version tag of the results.json layout (docs/results-schema.md).
RESULTS_SCHEMA = "lpft-results-v1"
