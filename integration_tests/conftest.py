"""Integration fixtures: the unit-test Spark session and config helpers, shared."""
from tests.conftest import cfg, ctx, local_config, session_root, spark  # noqa: F401
