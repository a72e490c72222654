"""Data side (paper §4.1): dataset readers and converters, TFRecord shards, grain pipelines, the synthetic datasets."""
