"""The system tests reach the same servers as the integration tests, through the same fixtures."""

from tests.integration.conftest import *  # noqa: F403
