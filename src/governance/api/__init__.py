"""The HTTP layer: request schema -> one application call -> response schema."""
