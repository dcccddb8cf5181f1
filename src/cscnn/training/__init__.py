"""Model training and evaluation: features, the training loop, metrics, checkpoints, embedding tables, the
variant comparison and its pictures."""
