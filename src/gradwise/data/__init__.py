"""Data: sources, preprocessing fitted on the training split, splits, augmentation, batching."""

from gradwise.data.dataset import Dataset, Split
from gradwise.data.schema import Schema
from gradwise.data.sources import load_dataset

__all__ = ["Dataset", "Schema", "Split", "load_dataset"]
