"""Settings for the test suite: the real settings, with a test key, a fast password hasher and no
sign-in lockout."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")

from commonroom.settings import *  # noqa: F403

# Static files are collected only for deployment; tests serve none.
WHITENOISE_AUTOREFRESH = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The test client's login() passes no request, which the lockout backend needs; the lockout has tests
# of its own that put it back (tests/test_signin.py).
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
