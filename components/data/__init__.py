"""Data: from a video file to a batch, one sub-package per step.

    writing/    video files + annotations → shards and a manifest (incremental, content-keyed)
    formats/    what is on disk: the sample schema, the manifest, per-shard counts/sizes/digests
    decoding/   mp4 bytes ↔ frames (PyAV, video-reader-rs, torchcodec behind one interface)
    reading/    shards → clips → batches: tar reader, splitting, sampling, augmentation, pipeline
    datasets/   what a command trains on: dataset.manifest, dataset.mixture, generated sets
"""
