"""The production pipeline: Ray Train jobs per action class, the Ray Tune search, the Prefect
flows that chain them, and the store's versioned registries of backbones and embeddings."""
