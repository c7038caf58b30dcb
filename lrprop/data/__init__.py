"""Videos for training and evaluation: sources, temporal sampling, augmentation, view datasets."""
