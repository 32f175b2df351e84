"""What is on disk: the shard sample schema, the manifest (with each shard's count, size and
digest) and the label-safety declarations a manifest carries."""
