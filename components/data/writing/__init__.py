"""From video files to shards: sources, annotation formats, the incremental writer,
precomputed fields and the validator."""
