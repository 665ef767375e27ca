"""Credentials shared by the security tests (test-only values)."""

ADMIN_TOKEN = "admin-token-for-tests"
APP_ID, APP_SECRET = "city-platform", "s3cret-for-tests"
