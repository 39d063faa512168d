"""Training: roles, stages, rollouts, error banks, checkpoints and the trainer."""
