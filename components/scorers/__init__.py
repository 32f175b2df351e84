"""Token scorers: ``video (b, C, T, H, W) → scores (b, t, h, w)`` on the token grid."""
