"""The test suite's Cell Key Method secret and record keys.

conftest puts the secret in the environment, so every worker a test starts and every oracle a
test computes use the same keys (a generated, test-only value: no deployment uses it).
"""

from __future__ import annotations

from processors.disclosure import RecordKeys

TEST_CELL_KEY_SECRET = "palliwatch-tests-only-cell-key-secret-0001"
KEYS = RecordKeys(TEST_CELL_KEY_SECRET.encode())
