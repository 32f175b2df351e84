"""Data: shard writing/reading, manifests, synthetic video sets."""
