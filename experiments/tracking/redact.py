"""Credentials never reach a stored run: URLs of the form ``scheme://user:password@host`` are
rewritten to ``scheme://user:***@host`` in config, captured output, host info, fail traces and
text artifacts (see ``mongo_observer.py``), and known passwords are masked wherever they occur.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
# user:password@ right after a scheme; the password may hold anything but '@', '/' and blanks.
_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s'\"]+):(?P<password>[^@/\s'\"]+)@")
_known_secrets: set[str] = set()
# Shorter passwords are masked inside URLs only: masking "abc" in all text would garble output.
MIN_BARE_SECRET_CHARS = 4


def remember_secret_of(url: str) -> None:
    """Masks the password of ``url`` everywhere from now on, even outside a URL (a driver
    error message could quote it alone)."""
    password = urlsplit(url).password
    if password:
        _known_secrets.update(p for p in {password, unquote(password)} if len(p) >= MIN_BARE_SECRET_CHARS)


def redact_text(text: str) -> str:
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    for secret in _known_secrets:
        text = text.replace(secret, MASK)
    return text


def redact(value: Any) -> Any:
    """``value`` with every string (keys included) redacted; containers are copied."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact(k): redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def safe_url(url: str) -> str:
    """``url`` for messages: credentials masked."""
    return redact_text(url)
