"""Raw CAN captures in: readers for every on-disk format, the dataset catalog, the synthetic generator."""
