"""The training engine every command builds on: optimizer and schedule, checkpoints, device
and precision, DDP / FSDP2, gin configuration, and the fine-tuning helpers (layer decay,
mixup, metrics, loading pre-trained encoders)."""
