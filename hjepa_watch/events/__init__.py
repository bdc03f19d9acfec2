"""Ingest: TensorBoard event files -> scalar batches (records, decode, discovery, tailing)."""
