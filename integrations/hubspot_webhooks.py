"""HubSpot webhook signatures (v3) and what a delivery's events mean for leads: pure functions, tested without HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac

from integrations.hubspot import property_specs

MAX_AGE_MS = 5 * 60 * 1000
# HubSpot's docs: decode these in the request URI before signing (others stay percent-encoded).
DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
OWN_PROPERTIES = {
    spec["name"] for spec in property_specs([])
}  # LeadPulse writes these: a change to one is our own echo


class SignatureError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def signed_uri(url: str) -> str:
    out = url
    for encoded, char in DECODED.items():
        out = out.replace(encoded, char).replace(encoded.lower(), char)
    return out


def verify_v3(
    client_secret: str, method: str, url: str, body: bytes, timestamp: str, signature: str, now_ms: int
) -> None:
    """Raises SignatureError unless the signature matches and the timestamp is within five minutes."""
    if not timestamp or not signature:
        raise SignatureError(
            "missing_signature_headers", "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required"
        )
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("bad_signature", "X-HubSpot-Request-Timestamp is not a number") from None
    if abs(now_ms - sent) > MAX_AGE_MS:
        raise SignatureError("stale_timestamp", "X-HubSpot-Request-Timestamp is more than five minutes away")
    source = method.encode() + signed_uri(url).encode() + body + timestamp.encode()
    expected = base64.b64encode(hmac.new(client_secret.encode(), source, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureError("bad_signature", "X-HubSpot-Signature-v3 does not match")


def sign_v3(client_secret: str, method: str, url: str, body: bytes, timestamp: str) -> str:
    """What HubSpot sends (used by the tests and by anyone replaying a delivery)."""
    source = method.encode() + signed_uri(url).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(client_secret.encode(), source, hashlib.sha256).digest()).decode()


def metadata_key(property_name: str) -> str:
    return f"hubspot_{property_name}"
