"""Segment-compatible tracking: call parsing and ingestion."""
