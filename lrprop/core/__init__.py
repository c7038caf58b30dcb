"""The maths: DTW and its kernels, the losses, the model, the metrics and the label-free baselines.

Tensors and arrays in, tensors and arrays out. Nothing here imports the config, the store, Ray,
Prefect or fsspec (tests/test_layers.py checks it), so these modules can be used, tested and
benchmarked on their own.
"""
