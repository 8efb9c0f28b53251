"""Training: the loop, losses, optimizers and schedules, early stopping, checkpoints."""
