"""Images of chunks, block mosaics and blind source finding (issue #18)."""
