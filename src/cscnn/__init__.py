"""CSCNN: category-specific CNN for visual-aware CTR prediction (Liu et al., KDD 2020)."""

__version__ = "0.1.0"
