"""The domain model: aggregates and their events. Imports nothing else of ours."""
