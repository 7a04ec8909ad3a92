"""Training: the distributed loop, schedules, checkpoints and the model directory."""
