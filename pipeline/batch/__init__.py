"""Batch mode (CONTRACT section 8): the same plan sent through the provider's Batch API at its
price. Each run adopts batches a killed run created, collects the batches that have ended,
submits the pending items that are in no open batch, and returns (or, with `wait`, polls)."""
