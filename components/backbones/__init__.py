"""Video ViT encoders, MAE decoders and classification heads."""
