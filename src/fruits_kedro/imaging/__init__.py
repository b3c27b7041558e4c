"""Images as the pipelines read them: bytes to RGB pixels, or the reason why not."""
