"""CSCNN and the baselines of the paper's comparison, as one configurable `CTRModel`."""

from cscnn.models.ctr import Batch, CTRModel, ImageBank

__all__ = ["Batch", "CTRModel", "ImageBank"]
