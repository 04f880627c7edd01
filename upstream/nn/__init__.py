"""Building blocks, one per file. Layers take plain keyword arguments, never config objects."""
