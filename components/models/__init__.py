"""Assembled models: the MAE used in pre-training and the classifier used in fine-tuning."""
