"""Kafka plumbing of palliwatch: settings, the topic catalogue, the Faust app, producers, CLI."""
