"""RFC 3161 trusted timestamps over a file's SHA-256 (the optional ``timestamp`` extra).

:func:`request_timestamp` sends a time-stamping authority (TSA) a
TimeStampReq for ``SHA-256(data)`` with a fresh nonce and ``certReq`` set,
over HTTP(S) POST (``application/timestamp-query``), and accepts the answer
only if its status is *granted*, its message imprint is that SHA-256 and its
nonce is the request's; it returns the TimeStampResp exactly as received
(DER, what ``openssl ts -reply`` writes to a ``.tsr`` file). Stored beside
the data, that token proves later, to anyone, that the data existed by the
token's time: :func:`verify_timestamp` checks the imprint against the data
again, then the CMS signature, the signer's certificate (critical
extendedKeyUsage timeStamping) and its chain to a certificate in a PEM CA
file, as of the token's own time. ``openssl ts -verify -in F.tsr -data F
-CAfile ca.pem`` checks the same token with standard tools.

The ASN.1 and CMS work is rfc3161-client's (Trail of Bits; its verification
runs OpenSSL's PKCS7_verify); see docs/decisions.md for why, and for its
limits: it parses strict DER only, and no revocation is checked. Every
certificate in the CA file is a trust anchor, as with ``-CAfile``. Functions
here are pure apart from the one HTTP request and are thread-safe.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..errors import (
    MissingExtraError,
    SigningKeyError,
    TimestampAuthorityError,
    TimestampVerificationError,
)

if TYPE_CHECKING:
    from rfc3161_client import TimeStampResponse

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_REPLY_BYTES",
    "QUERY_CONTENT_TYPE",
    "REPLY_CONTENT_TYPE",
    "TimestampInfo",
    "read_timestamp",
    "request_timestamp",
    "verify_timestamp",
]

QUERY_CONTENT_TYPE: Final = "application/timestamp-query"
REPLY_CONTENT_TYPE: Final = "application/timestamp-reply"
DEFAULT_TIMEOUT: Final = 10.0  # seconds for the whole exchange's socket operations
MAX_REPLY_BYTES: Final = 1 << 20  # a token with its certificates is a few KB
_SHA256_OID: Final = "2.16.840.1.101.3.4.2.1"
_GRANTED: Final = 0
_STATUS_NAMES: Final = {
    0: "granted",
    1: "grantedWithMods",
    2: "rejection",
    3: "waiting",
    4: "revocationWarning",
    5: "revocationNotification",
}


class TimestampInfo(msgspec.Struct, frozen=True):
    """What a token says: when, which digest, by whom, under which policy."""

    gen_time: datetime  # the TSA's time (UTC)
    digest: str  # the SHA-256 it stamps, hex
    serial_number: int
    policy: str  # OID, dotted
    nonce: int | None
    tsa_name: str | None  # the TSA's name as the token gives it (RFC 4514 for a directory name)


def request_timestamp(
    url: str,
    data: bytes,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ca_file: Path | None = None,
) -> bytes:
    """Ask the TSA at ``url`` to stamp ``SHA-256(data)``; return the DER TimeStampResp.

    Raises :class:`TimestampAuthorityError` when the TSA cannot be reached, times
    out, answers with an HTTP error or something that is not a TimeStampResp,
    refuses, or grants a token for another digest or nonce. With ``ca_file``
    the token must also verify against it (as :func:`verify_timestamp`).
    """
    lib = _library()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TimestampAuthorityError(f"the timestamp URL {url!r} is not an http(s) URL")
    if not data:
        raise ValueError("there is nothing to timestamp")
    query = (
        lib.TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(lib.HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    body = _post(url, query.as_bytes(), timeout)
    where = f"the TSA at {url}"
    try:
        response = lib.decode_timestamp_response(body)
    except ValueError as exc:
        raise TimestampAuthorityError(f"{where} sent no RFC 3161 response ({exc})") from None
    try:
        info = _checked_info(response, hashlib.sha256(data).digest())
    except TimestampVerificationError as exc:
        raise TimestampAuthorityError(f"{where}: {exc}") from None
    if info.nonce != query.nonce:
        raise TimestampAuthorityError(f"{where} answered with another nonce (a replayed token?)")
    if not response.signed_data.certificates:
        raise TimestampAuthorityError(f"{where} sent no certificate although asked for it")
    if ca_file is not None:
        try:
            verify_timestamp(body, data, ca_file)
        except TimestampVerificationError as exc:
            raise TimestampAuthorityError(f"{where}: {exc}") from None
    return body


def verify_timestamp(token: bytes, data: bytes, ca_file: Path) -> TimestampInfo:
    """Check that ``token`` (a DER TimeStampResp) stamps ``SHA-256(data)`` and is
    signed by a TSA whose certificate chains to one in ``ca_file`` (PEM).

    Raises :class:`TimestampVerificationError` naming what fails, or
    :class:`SigningKeyError` when the CA file is missing or holds no certificate.
    """
    lib = _library()
    digest = hashlib.sha256(data).digest()
    response = _decode(lib, token)
    info = _checked_info(response, digest)
    builder = lib.VerifierBuilder()
    for certificate in _load_ca_file(ca_file):
        builder = builder.add_root_certificate(certificate)
    try:
        builder.build().verify(response, digest)
    except (lib.VerificationError, ValueError) as exc:
        raise TimestampVerificationError(
            f"the timestamp token does not verify against {ca_file}: {exc}"
        ) from None
    return info


def read_timestamp(token: bytes) -> TimestampInfo:
    """What a granted token says, without checking its signature (for display)."""
    lib = _library()
    response = _decode(lib, token)
    return _checked_info(response, None)


# -- helpers ------------------------------------------------------------------------


def _library() -> ModuleType:
    try:
        import rfc3161_client
    except ImportError:
        raise MissingExtraError(
            "RFC 3161 timestamps need the 'timestamp' extra: pip install 'auditjournal[timestamp]'"
        ) from None
    return rfc3161_client


def _post(url: str, query: bytes, timeout: float) -> bytes:
    # imported here, not with the module: ``verify`` and the recorder load this module,
    # and http.client (with ssl and email) costs ~10 ms at every start for a request
    # only a seal with a ``timestamp_url`` makes
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url,
        data=query,
        method="POST",
        headers={"Content-Type": QUERY_CONTENT_TYPE, "Accept": REPLY_CONTENT_TYPE},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body: bytes = reply.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise TimestampAuthorityError(
            f"the TSA at {url} answered HTTP {exc.code} {exc.reason}"
        ) from None
    except urllib.error.URLError as exc:
        raise TimestampAuthorityError(f"the TSA at {url} cannot be reached: {exc.reason}") from None
    except TimeoutError:
        raise TimestampAuthorityError(f"the TSA at {url} did not answer in {timeout} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise TimestampAuthorityError(f"the TSA at {url} failed: {exc!r}") from None
    if len(body) > MAX_REPLY_BYTES:
        raise TimestampAuthorityError(f"the TSA at {url} sent more than {MAX_REPLY_BYTES} bytes")
    return body


def _decode(lib: ModuleType, token: bytes) -> TimeStampResponse:
    if len(token) > MAX_REPLY_BYTES:
        raise TimestampVerificationError(f"the timestamp token is over {MAX_REPLY_BYTES} bytes")
    try:
        response: TimeStampResponse = lib.decode_timestamp_response(token)
    except ValueError as exc:
        raise TimestampVerificationError(
            f"the timestamp token is not a DER TimeStampResp ({exc})"
        ) from None
    return response


def _checked_info(response: TimeStampResponse, digest: bytes | None) -> TimestampInfo:
    """The token's facts, once its status is granted and (given ``digest``) its
    imprint is that SHA-256; else :class:`TimestampVerificationError`."""
    status = response.status
    if status != _GRANTED:
        said = "; ".join(response.status_string)
        name = _STATUS_NAMES.get(status, str(status))
        raise TimestampVerificationError(
            f"no token: the TSA's status is {name}" + (f" ({said})" if said else "")
        )
    try:
        tst = response.tst_info
        imprint = tst.message_imprint
        algorithm = imprint.hash_algorithm.dotted_string
        stamped = imprint.message
        info = TimestampInfo(
            gen_time=tst.gen_time,
            digest=stamped.hex(),
            serial_number=tst.serial_number,
            policy=tst.policy.dotted_string,
            nonce=tst.nonce,
            tsa_name=_general_name(tst.name),
        )
    except ValueError as exc:
        raise TimestampVerificationError(f"the token's TSTInfo is unreadable ({exc})") from None
    if algorithm != _SHA256_OID:
        raise TimestampVerificationError(f"the token stamps a digest of another kind ({algorithm})")
    if digest is not None and stamped != digest:
        raise TimestampVerificationError(
            f"the token stamps SHA-256 {stamped.hex()[:16]}..., not this data's "
            f"{digest.hex()[:16]}..."
        )
    return info


def _general_name(name: Any) -> str | None:
    if name is None:
        return None
    from cryptography import x509

    if isinstance(name, x509.DirectoryName):
        return name.value.rfc4514_string()
    return str(name.value)


def _load_ca_file(ca_file: Path) -> list[Any]:
    from cryptography import x509

    try:
        pem = ca_file.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(f"CA file {ca_file} does not exist") from None
    except OSError as exc:
        raise SigningKeyError(f"CA file {ca_file} cannot be read: {exc.strerror}") from None
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise SigningKeyError(f"CA file {ca_file} holds no PEM certificate") from None
    unique = {c.fingerprint(_sha256_algorithm()): c for c in certificates}
    return list(unique.values())  # the verifier refuses the same root twice


def _sha256_algorithm() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()
