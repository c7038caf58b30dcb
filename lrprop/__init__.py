"""lrprop: frame-level video embeddings for temporal alignment with LRProp."""

__version__ = "0.1.0"
