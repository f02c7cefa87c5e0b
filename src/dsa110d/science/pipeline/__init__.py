"""The block pipeline: which chunks make a block, the stage interface and the built-in stages."""
