"""Evaluation of trained models from a config: embedding the validation videos, scoring them
beside the label-free references, and the metrics table and HTML report."""
