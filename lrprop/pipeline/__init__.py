"""The production pipeline: Ray Train jobs per action class, the Ray Tune search, the Prefect
flows that chain them, and what keeps a run going (resume, failures, progress, flow runs). What
the store holds, and where, is :mod:`lrprop.registry`'s."""
