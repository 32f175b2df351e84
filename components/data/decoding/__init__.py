"""Video bytes ↔ frames: encoding mp4 clips, and the decoders behind one interface (PyAV,
video-reader-rs, torchcodec)."""
