"""Read models built from the event log: one projection per view, applied in batches."""
