"""Data side: Aff-Wild2 reader, synthetic Aff-Wild2, TFRecord shards, grain pipelines."""
