"""The developer's room: the `palliwatch` CLI, the local services, the simulator, the benches,
the dead-letter tool and topic administration. The worker (streams/app.py, streams/agents/)
never imports from here (import-linter, pyproject.toml)."""
