"""Contracts of palliwatch: code lists and pydantic models per topic."""
