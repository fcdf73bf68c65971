"""webhooks: org admins' endpoints receive matching events, signed, retried, then dead-lettered."""
