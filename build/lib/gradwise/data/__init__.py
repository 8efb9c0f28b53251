"""Data: sources, preprocessing fitted on the training split, splits, augmentation, batching."""
