"""``verify``'s check of the RFC 3161 token beside a manifest (``audit_trail.manifest.tsr``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import AuditJournalError
from ..fs.safeio import read_regular
from ..proofs.timestamping import MAX_REPLY_BYTES, read_timestamp, verify_timestamp

__all__ = ["check_timestamp"]


def check_timestamp(path: Path, manifest: bytes, tsa_ca: Path | None) -> tuple[str | None, str]:
    """``(problem or None, what the report says about the timestamp)``.

    No token: fine unless ``tsa_ca`` asks for one. A token: its message imprint
    must be the manifest's SHA-256; with ``tsa_ca`` its signature must chain to
    a certificate in that PEM file (as of the token's time).
    """
    try:
        token = read_regular(path, "timestamp token", MAX_REPLY_BYTES)
    except FileNotFoundError:
        if tsa_ca is not None:
            return "missing: --tsa-ca asks for a trusted timestamp", "missing"
        return None, "absent"
    except AuditJournalError as exc:
        return str(exc), "INVALID"
    try:
        if tsa_ca is not None:
            info = verify_timestamp(token, manifest, tsa_ca)
            return None, f"valid ({info.gen_time.isoformat()})"
        info = read_timestamp(token)
    except AuditJournalError as exc:
        return str(exc), "INVALID"
    if info.digest != hashlib.sha256(manifest).hexdigest():
        return "the token stamps another digest than the manifest's", "INVALID"
    return None, f"present ({info.gen_time.isoformat()}), signature not checked (no --tsa-ca)"
