"""Encoder and decoder masking strategies; one contract: ``MaskPlan``."""
