"""lvmae components. Every module below is imported by ``registry.discover()``."""
