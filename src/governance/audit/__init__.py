"""What auditors get: the audit trail, its exports, and the tamper-evident hash chain of the log."""
