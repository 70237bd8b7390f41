"""Deterministic pseudonyms for the personal and secret values of a copy.

Each value is replaced by one derived from HMAC-SHA256(salt, kind + value): the
same value gives the same pseudonym everywhere (an email in orders and in a
webhook's payload, a storage reference, an IP address), so joins, duplicates and
uniqueness survive, while nothing of the original can be read back without the
salt. Which columns, and which keys inside JSON payloads, are in ``COLUMNS`` and
``PERSONAL_KEYS``; inside any other text of a payload, email addresses and IP
addresses are found and replaced too.
"""

import hashlib
import hmac
import ipaddress
import json
import os
import re
from collections.abc import Callable
from typing import Any

#: (table, column) -> kind of the value.
COLUMNS = {
    ("orders", "email"): "email",
    ("webhook_logs", "signature"): "signature",
    ("webhook_logs", "sourceIp"): "ip",
    ("webhook_logs", "payload"): "json",
    ("webhook_logs", "result"): "json",
    ("webhook_logs", "error"): "text",
    ("payments", "rawPayload"): "json",
    ("keys", "storageRef"): "storage_ref",
    ("order_items", "signedUrl"): "signed_url",  # a bearer secret: whoever has it, downloads
}

#: Keys of a JSON object whose value is personal (compared lower case, - and _ alike).
PERSONAL_KEYS = {
    "email": "email", "customer_email": "email", "buyer_email": "email", "payer_email": "email",
    "name": "name", "first_name": "name", "last_name": "name", "full_name": "name",
    "customer_name": "name", "buyer_name": "name", "firstname": "name", "lastname": "name",
    "ip": "ip", "ip_address": "ip", "ipaddress": "ip", "source_ip": "ip", "client_ip": "ip",
    "remote_addr": "ip",
    "phone": "name", "phone_number": "name", "address": "name", "street": "name",
    "pay_address": "signature", "payin_address": "signature", "payout_address": "signature",
    "signature": "signature", "sig": "signature", "hmac": "signature",
    "storage_ref": "storage_ref", "storageref": "storage_ref",
}

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
                   r"(?![0-9A-Fa-f:])")


def random_salt() -> str:
    return os.urandom(16).hex()


class Anonymizer:
    """Pseudonyms for one copy; the same ``salt`` gives the same pseudonyms."""

    def __init__(self, salt: str) -> None:
        self.key = salt.encode("utf-8")
        self._memo: dict[tuple[str, str], str] = {}

    def digest(self, kind: str, value: str) -> str:
        key = (kind, value)
        found = self._memo.get(key)
        if found is None:
            found = hmac.new(self.key, f"{kind}\x00{value}".encode("utf-8", "surrogatepass"),
                             hashlib.sha256).hexdigest()
            if len(self._memo) < 200_000:  # emails and IPs repeat; memory stays bounded
                self._memo[key] = found
        return found

    # -- one value of a kind ------------------------------------------------------------

    def email(self, value: str) -> str:
        return f"user-{self.digest('email', value.strip().lower())[:16]}@anonymized.invalid"

    def signature(self, value: str) -> str:
        # As long as the original (an HMAC-SHA512 is 128 hex digits), at least 16.
        text = self.digest("signature", value)
        while len(text) < len(value):
            text += self.digest("signature", text)
        return text[:max(16, len(value))]

    def ip(self, value: str) -> str:
        """An address of the same family, in a private range (10/8, fd00::/8)."""
        h = bytes.fromhex(self.digest("ip", value.strip().lower()))
        try:
            version = ipaddress.ip_address(value.strip()).version
        except ValueError:
            version = 6 if ":" in value else 4
        if version == 4:
            return f"10.{h[0]}.{h[1]}.{h[2]}"
        return str(ipaddress.IPv6Address(b"\xfd" + h[:15]))

    def storage_ref(self, value: str) -> str:
        return f"anonymized/{self.digest('storage_ref', value)[:32]}.enc"

    def signed_url(self, value: str) -> str:
        return f"https://anonymized.invalid/{self.digest('signed_url', value)[:32]}"

    def name(self, value: str) -> str:
        return f"anon-{self.digest('name', value)[:12]}"

    def text(self, value: str) -> str:
        """Free text with every email and IP address in it replaced."""
        value = _EMAIL.sub(lambda m: self.email(m.group()), value)
        value = _IPV4.sub(lambda m: self.ip(m.group()), value)
        return _IPV6.sub(self._ipv6_match, value)

    def _ipv6_match(self, match: re.Match[str]) -> str:
        candidate = match.group()
        if not any(c.isalnum() for c in candidate):
            return candidate  # "::" in "Foo::bar"
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            return candidate  # a time (12:30:00) or a hex run, not an address
        return self.ip(candidate)

    # -- JSON -----------------------------------------------------------------------------

    def json_text(self, text: str) -> str:
        """A JSON document (text) with its personal fields replaced (text again)."""
        return json.dumps(self.json_value(json.loads(text)), ensure_ascii=False,
                          separators=(",", ":"))

    def json_value(self, value: Any, kind: str | None = None) -> Any:
        if isinstance(value, dict):
            return {key: self.json_value(item, PERSONAL_KEYS.get(_key_name(key)))
                    for key, item in value.items()}
        if isinstance(value, list):
            return [self.json_value(item, kind) for item in value]
        if kind is not None and value is not None and not isinstance(value, bool):
            return getattr(self, kind)(str(value))
        if isinstance(value, str):
            return self.text(value)
        return value

    def column(self, kind: str) -> Callable[[Any], Any]:
        """The function that anonymizes a column's value of ``kind`` (None stays None)."""
        function = self.json_text if kind == "json" else getattr(self, kind)
        return lambda value: None if value is None else function(value)


def _key_name(key: object) -> str:
    return str(key).lower().replace("-", "_")
