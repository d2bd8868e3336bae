"""The payloads of the reference workload (``workload.py``): deterministic, JSON-native
dicts built from a seeded ``random.Random``, each row's different from every other's."""

from __future__ import annotations

import datetime as _dt
import random
from typing import Any

Payload = dict[str, Any]

ARTIFACT_EVERY = 1_000
"""One ``record_artifact`` per this many rows (and one for a last partial batch)."""
TRANSFORM_NAMES = ("normalize", "enrich_llm", "score")


# --------------------------------------------------------------------------- vocabulary

_VOCABULARY = (
    "audit ledger invoice customer shipment order account balance payment refund "
    "review approve reject escalate region quarterly forecast margin revenue cost "
    "supplier contract delivery warehouse inventory pallet carrier route delay "
    "priority standard express return damaged verified pending settled disputed "
    "the a of and to in for with on by from at as is was be this that which model "
    "prompt token summary sentiment positive negative neutral confidence threshold "
    "policy compliance record lineage source transform gate sink"
)
_WORDS: tuple[str, ...] = tuple(_VOCABULARY.split())
_CITIES = (
    "Amsterdam",
    "Berlin",
    "Canberra",
    "Dublin",
    "Edinburgh",
    "Frankfurt",
    "Geneva",
    "Helsinki",
    "Istanbul",
    "Johannesburg",
    "Kyoto",
    "Lisbon",
)
_COUNTRIES = ("NL", "DE", "AU", "IE", "GB", "DE", "CH", "FI", "TR", "ZA", "JP", "PT")
_CURRENCIES = ("EUR", "EUR", "AUD", "EUR", "GBP", "EUR", "CHF", "EUR", "TRY", "ZAR", "JPY", "EUR")
_STATUSES = ("new", "paid", "shipped", "delivered", "returned", "cancelled")
_CHANNELS = ("web", "mobile", "store", "partner", "phone")
_TAGS = ("priority", "gift", "b2b", "repeat", "promo", "fragile", "bulk", "intl")
_LABELS = ("approve", "review", "reject")
_EPOCH = 1_717_200_000  # 2024-06-01T00:00:00Z


def _text(rng: random.Random, length: int) -> str:
    """Exactly ``length`` characters of word salad (ASCII, so JSON size == length + 2)."""
    parts: list[str] = []
    size = 0
    while size < length:
        word = rng.choice(_WORDS)
        parts.append(word)
        size += len(word) + 1
    text = " ".join(parts)
    return text[:length]


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(n * 4):0{n}x}"


def _timestamp(i: int, rng: random.Random) -> str:
    seconds = _EPOCH + i * 7 + rng.randrange(7)
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- payloads


def make_row(i: int, rng: random.Random) -> Payload:
    """The source row ``i``: a dozen fields, a 600-character text, a nested dict (~1 KiB)."""
    city = rng.randrange(len(_CITIES))
    qty = rng.randint(1, 40)
    unit = round(rng.uniform(1.0, 250.0), 2)
    return {
        "row_index": i,
        "order_id": f"ORD-{i:09d}-{_hex(rng, 6)}",
        "customer_id": f"C{rng.randrange(10**8):08d}",
        "email": f"user{rng.randrange(10**6):06d}@example.com",
        "created_at": _timestamp(i, rng),
        "status": rng.choice(_STATUSES),
        "channel": rng.choice(_CHANNELS),
        "quantity": qty,
        "unit_price": unit,
        "amount": round(qty * unit, 2),
        "currency": _CURRENCIES[city],
        "is_priority": rng.random() < 0.2,
        "tags": rng.sample(_TAGS, k=rng.randint(1, 3)),
        "notes": _text(rng, 600),
        "shipping": {
            "city": _CITIES[city],
            "country": _COUNTRIES[city],
            "postcode": f"{rng.randrange(10**5):05d}",
            "geo": {
                "lat": round(rng.uniform(-60.0, 70.0), 4),
                "lon": round(rng.uniform(-170.0, 170.0), 4),
            },
        },
    }


def make_transform_input(i: int, step: int, rng: random.Random) -> Payload:
    """What transform ``step`` (1..3) receives for row ``i`` (~1 KiB)."""
    return {
        "row_index": i,
        "step": step,
        "transform": TRANSFORM_NAMES[step - 1],
        "attempt": 0,
        "record": {
            "order_id": f"ORD-{i:09d}",
            "customer_id": f"C{rng.randrange(10**8):08d}",
            "amount": round(rng.uniform(1.0, 9_000.0), 2),
            "currency": rng.choice(_CURRENCIES),
            "status": rng.choice(_STATUSES),
            "channel": rng.choice(_CHANNELS),
            "country": rng.choice(_COUNTRIES),
            "quantity": rng.randint(1, 40),
        },
        "text": _text(rng, 685),
        "context": {
            "batch": i // ARTIFACT_EVERY,
            "trace_id": _hex(rng, 32),
            "received_at": _timestamp(i, rng),
        },
    }


def make_transform_output(i: int, step: int, rng: random.Random) -> Payload:
    """What transform ``step`` (1..3) produces for row ``i`` (~1 KiB)."""
    return {
        "row_index": i,
        "step": step,
        "transform": TRANSFORM_NAMES[step - 1],
        "record": {
            "order_id": f"ORD-{i:09d}",
            "amount_eur": round(rng.uniform(1.0, 9_000.0), 2),
            "risk_score": round(rng.random(), 4),
            "sentiment": rng.choice(("positive", "negative", "neutral")),
            "category": rng.choice(_WORDS),
            "flags": rng.sample(_TAGS, k=rng.randint(0, 3)),
            "normalized": rng.random() < 0.9,
        },
        "summary": _text(rng, 730),
        "metrics": {
            "tokens_in": rng.randint(100, 900),
            "tokens_out": rng.randint(20, 300),
            "fields_changed": rng.randint(0, 12),
        },
    }


def make_call_request(i: int, rng: random.Random) -> Payload:
    """The 2nd transform's external call request for row ``i`` (~0.5 KiB)."""
    return {
        "row_index": i,
        "model": "gpt-4o-mini",
        "temperature": 0.0,
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "Classify the order note and summarise it."},
            {"role": "user", "content": _text(rng, 285)},
        ],
        "request_id": _hex(rng, 24),
    }


def make_call_response(i: int, rng: random.Random) -> Payload:
    """The 2nd transform's external call response for row ``i`` (~1 KiB)."""
    return {
        "row_index": i,
        "id": f"chatcmpl-{_hex(rng, 24)}",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": _text(rng, 760)},
            }
        ],
        "usage": {
            "prompt_tokens": rng.randint(80, 200),
            "completion_tokens": rng.randint(50, 256),
            "total_tokens": rng.randint(130, 456),
        },
    }


def make_routing_reason(i: int, rng: random.Random) -> Payload:
    """The gate's small routing reason for row ``i`` (~100 B)."""
    return {
        "row_index": i,
        "rule": "risk_score < threshold",
        "risk_score": round(rng.random() * 0.5, 4),
        "threshold": 0.5,
        "label": rng.choice(_LABELS),
    }
