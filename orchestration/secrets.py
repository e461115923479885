"""Credentials never leave the process: one place that masks them in URIs and text.

``mask_uri`` hides a URI's credentials: the password of ``user:password@``, a token-only
user (``http://token@host``), and query or fragment parameters that carry secrets
(``token``, ``sig``, ``key``, ``access_token``, ``password``, ``X-Amz-Signature``...),
whatever the scheme (sqlite, postgresql, http(s), s3, gs...). ``mask_text`` does the same
for every URI in free text, for secret-named ``name=value`` pairs (``?token=...`` in an
error quoting a request path, ``password=...`` in a DSN) and ``Authorization`` headers.
Every line Sluice prints, logs or compiles goes through them.

>>> mask_uri("postgresql://sluice:hunter2@db:5432/mlflow")
'postgresql://sluice:***@db:5432/mlflow'
>>> mask_uri("https://ghp_abc@host/x?sig=1&a=2")
'https://***@host/x?sig=***&a=2'
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# Names that are secrets wherever they appear as name=value.
_SECRET_WORDS = ("token", "secret", "passw", "pwd", "signature", "credential", "apikey", "api_key", "api-key",
                 "accesskey", "access_key", "access-key", "privatekey", "private_key", "private-key",
                 "authorization", "session_key", "sessionkey")
# Names too common in prose to mask there, but secrets as URI parameters (Azure's ``sig``, GCP's ``key``).
_PARAM_ONLY = ("key", "sig", "auth", "pass", "code_verifier")

_SCHEME_URI = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]*")
_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#]*)")
_VALUE = r"[^&#;\s\"'<>`)\]},]*"
_PARAM = re.compile(r"(?P<sep>[?&#;])(?P<name>[^=&#;?\s/\"'<>`]+)=(?P<value>" + _VALUE + ")")
_PAIR = re.compile(r"(?P<sep>^|[\s,(\[{\"'])(?P<name>[A-Za-z0-9_.-]+)(?P<eq>\s*=\s*)(?P<value>" + _VALUE + ")")
_AUTH_HEADER = re.compile(r"(?i)\b(?P<name>(?:proxy-)?authorization)(?P<eq>[\"']?\s*[:=]\s*[\"']?)"
                          r"(?P<value>(?:(?:basic|bearer|token|digest)\s+)?[^\s\"',}]+)")


def _secret_name(name: str, in_uri: bool) -> bool:
    lowered = name.lower()
    if any(word in lowered for word in _SECRET_WORDS):
        return True
    if not in_uri:
        return False
    return lowered in _PARAM_ONLY or lowered.endswith(("_key", "-key", ".key", "_sig", "-sig"))


def _mask_params(text: str) -> str:
    def repl(m: re.Match) -> str:
        if not m.group("value") or not _secret_name(m.group("name"), in_uri=True):
            return m.group(0)
        return f"{m.group('sep')}{m.group('name')}={MASK}"

    return _PARAM.sub(repl, text)


def mask_uri(uri: str | None) -> str | None:
    """``uri`` with its credentials replaced by ``***``; anything else is kept as it is."""
    if not uri:
        return uri
    match = _AUTHORITY.match(uri)
    if match is None:
        return _mask_params(uri)
    authority = match.group("authority")
    if "@" in authority:
        # The last '@' ends the user info: libraries read an unescaped '@' in a password so.
        userinfo, _, host = authority.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        masked = f"{user}:{MASK}" if colon else MASK
        authority = f"{masked}@{host}"
    return match.group("scheme") + authority + _mask_params(uri[match.end():])


def mask_text(text: str) -> str:
    """``text`` with the credentials of every URI, secret-named pair and auth header in it masked."""
    if not text:
        return text
    text = _SCHEME_URI.sub(lambda m: mask_uri(m.group(0)), text)
    text = _mask_params(text)  # a request path quoted without its scheme: "/api?token=..."
    text = _AUTH_HEADER.sub(lambda m: f"{m.group('name')}{m.group('eq')}{MASK}", text)

    def pair(m: re.Match) -> str:
        if not m.group("value") or m.group("value").startswith(MASK) or not _secret_name(m.group("name"), in_uri=False):
            return m.group(0)
        return f"{m.group('sep')}{m.group('name')}{m.group('eq')}{MASK}"

    return _PAIR.sub(pair, text)


def has_credentials(text: str | None) -> bool:
    """Whether ``text`` holds anything ``mask_text`` would hide."""
    return bool(text) and mask_text(text) != text


def masked(value: Any) -> Any:
    """A JSON-able document with every string in it (keys included) masked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {masked(k) if isinstance(k, str) else k: masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v) for v in value]
    return value
