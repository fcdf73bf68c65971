"""Downstream reactions to the published event stream, each its own process and consumer group.

They depend on the message contract in docs/events.md, never on the domain classes.
"""
