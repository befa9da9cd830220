"""Masking of secrets before anything leaves the process (MLflow params and tags).

A key "looks secret" when its words (split on ``_ - . /`` spaces and camelCase) name a
credential: ``token``/``hf_token``/``hub_token`` (but not ``eos_token``, ``pad_token_id`` or
``max_new_tokens``), ``api_key``/``apikey``, ``password``, ``secret``, ``credential(s)``,
``auth``/``use_auth_token``/``authorization`` (but not ``author``). A string value "looks
secret" when it contains something shaped like an access token (``hf_...``, ``sk-...``,
``ghp_...``), whatever its key. Either way the value becomes ``"***"``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

# "token" right after one of these names a tokenizer's special token, not a credential.
_SPECIAL_TOKEN_WORDS = frozenset(
    {
        "eos", "bos", "pad", "unk", "sep", "cls", "mask", "special", "start", "end", "eot",
        "sot", "image", "audio", "video", "chat", "im", "default", "additional", "added",
        "response", "instruction", "prompt", "completion", "think", "tool", "first", "last",
        "max", "min", "num", "per", "new",
    }
)
# Words that on their own mark a credential.
_SECRET_WORDS = frozenset(
    {"token", "apikey", "auth", "authorization", "authentication", "oauth", "passwd", "pwd",
     "credential", "credentials", "password", "passphrase", "secret", "secrets"}
)
# Substrings that mark a credential inside a single word ("clientsecret", "hftoken").
_SECRET_SUBSTRINGS = ("password", "secret", "credential", "apikey", "authtoken", "accesstoken",
                      "hftoken", "bearertoken")
# "<x> key" pairs that are credentials ("api_key", "access_key", "private_key").
_KEY_QUALIFIERS = frozenset({"api", "access", "private", "secret", "auth", "encryption", "ssh",
                             "signing", "license", "subscription"})

_SECRET_VALUE_RE = re.compile(
    r"(?<![A-Za-z0-9])("
    r"hf_[A-Za-z0-9]{20,}"            # Hugging Face access tokens
    r"|api_org_[A-Za-z0-9]{20,}"      # Hugging Face org tokens (legacy)
    r"|sk-[A-Za-z0-9_\-]{20,}"        # OpenAI-style keys
    r"|gh[pousr]_[A-Za-z0-9]{20,}"    # GitHub tokens
    r"|AKIA[0-9A-Z]{16}"              # AWS access key ids
    r")"
)


def key_words(key: Any) -> list[str]:
    """Lower-case words of a key: "model_kwargs.hfToken" -> ["model", "kwargs", "hf", "token"]."""
    return [w.lower() for w in _WORD_RE.findall(str(key))]


def is_secret_key(key: Any) -> bool:
    """True when a (possibly dotted, possibly camelCase) key names a credential."""
    words = key_words(key)
    for i, word in enumerate(words):
        prev = words[i - 1] if i > 0 else ""
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word == "token":
            # "hf_token", "token", "hub_token", "auth_token"; not "eos_token", "pad_token_id".
            if prev in _SPECIAL_TOKEN_WORDS:
                continue
            if nxt in {"id", "ids", "type", "types", "len", "length", "count", "counts", "limit",
                       "budget", "level", "index", "indices", "map", "str"}:
                continue
            return True
        if word in _SECRET_WORDS:
            return True
        if word == "key" and prev in _KEY_QUALIFIERS:
            return True
        if word.startswith("auth") and not word.startswith("author"):
            return True  # "authkey", "authheader"
        if any(s in word for s in _SECRET_SUBSTRINGS):
            return True
    return False


def looks_like_secret_value(value: Any) -> bool:
    """True for strings that contain an access-token-shaped substring (e.g. "hf_AbC...")."""
    return isinstance(value, str) and _SECRET_VALUE_RE.search(value) is not None


def redact(mapping: Any) -> Any:
    """A copy of `mapping` with secret-looking keys and token-looking values replaced by "***".

    Nested mappings and lists/tuples are walked; the input is never modified. Non-mapping
    input is redacted as a value (a list is walked, a token-looking string is masked).
    """
    return _redact_value(mapping)


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if v is not None and is_secret_key(k):
                out[k] = MASK  # None stays None: "no secret set" is worth seeing
            else:
                out[k] = _redact_value(v)
        return out
    if isinstance(value, (list, tuple)):
        items = [_redact_value(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if looks_like_secret_value(value):
        return MASK
    return value
