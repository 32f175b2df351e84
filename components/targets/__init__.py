"""Reconstruction targets: what the decoder regresses at ``dec_target_idx``, and the loss."""
