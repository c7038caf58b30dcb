"""Training on one machine from a config: the LRProp trainer, the backbone's pretraining and the
model checkpoints a run writes and resumes from."""
