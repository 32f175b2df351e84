"""From shards to batches: the tar reader, splitting over ranks × workers, temporal sampling,
augmentation, the data pipeline and its loaders (one dataset, or a weighted mixture)."""
