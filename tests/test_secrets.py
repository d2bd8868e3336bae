"""Secrets never enter the trail (issue 14, item 4).

Node configs, the run config and settings, call requests, responses and errors and
preflight results pass through the secret filter before anything is stored: known
secret field names get an HMAC-SHA256 fingerprint (``AUDITJOURNAL_FINGERPRINT_KEY``)
or ``<redacted>``. The end-to-end test records a run full of one unique secret and
then looks for it in every byte the store, its exports, CSV files, bundles, the SQL
tables, the logs and the errors hold.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from auditjournal import (
    AuditJournalError,
    AuditStore,
    InvalidEventError,
    Selection,
    SqlDatabase,
    export_csv,
    extract_bundle,
)
from auditjournal.evidence.extract import write_bundle
from auditjournal.model.secretfilter import FINGERPRINT_ENV, REDACTED, SecretFilter
from auditjournal.sql import lineage, lineagetext

SECRET = "sk-live-7f3a9c-unique-secret-value"
KEY = "fingerprint-key-for-tests-0123456789"
PG_ENV = "AUDITJOURNAL_TEST_DATABASE_URL"


def fingerprint(value: str, key: str = KEY) -> str:
    return (
        "<fingerprint:" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest() + ">"
    )


# -- the filter ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["api_key", "API_KEY", "Api-Key", "apikey", "x-api-key", "Authorization", "password",
     "client_secret", "openai_api_key", "db_password", "refresh_token", "Set-Cookie", "token"],
)  # fmt: skip
def test_secret_names_match_case_and_dash_insensitively(name: str) -> None:
    assert SecretFilter().is_secret(name)


@pytest.mark.parametrize(
    "name",
    ["completion_tokens", "prompt_tokens", "total_tokens", "max_tokens", "encryption_key_env",
     "api_key_fingerprint", "tokenizer", "secretary", "author"],
)  # fmt: skip
def test_names_that_merely_contain_a_secret_word_do_not_match(name: str) -> None:
    assert not SecretFilter().is_secret(name)


def test_values_become_fingerprints_only_where_the_name_says_so() -> None:
    secrets = SecretFilter(extra_fields=["session_id"], key=KEY.encode())
    value = {
        "model": "gpt",
        "headers": {"Authorization": f"Bearer {SECRET}", "Accept": "json"},
        "nested": [{"password": 12345}, {"max_tokens": 5}],
        "session-id": SECRET,
        "already": {"api_key": fingerprint("x")},
    }
    filtered, paths = secrets.filter(value)
    assert filtered["headers"]["Authorization"] == fingerprint(f"Bearer {SECRET}")
    assert filtered["headers"]["Accept"] == "json"
    digest = hmac.new(KEY.encode(), b"12345", hashlib.sha256).hexdigest()
    assert filtered["nested"][0]["password"] == f"<fingerprint:{digest}>"  # canonical JSON
    assert filtered["nested"][1] is value["nested"][1]  # untouched parts are not copied
    assert filtered["session-id"] == fingerprint(SECRET)
    assert filtered["already"] is value["already"]  # a fingerprint stays as it is
    assert sorted(paths) == ["$.headers.Authorization", "$.nested[0].password", "$.session-id"]
    assert value["headers"]["Authorization"] == f"Bearer {SECRET}"  # the input is not changed
    again, more = secrets.filter(filtered)
    assert again == filtered and more == ()
    untouched = {"a": [1, {"b": 2}]}
    assert secrets.filter(untouched) == (untouched, ())
    assert secrets.filter(untouched)[0] is untouched


def test_without_a_key_secrets_are_redacted_and_the_key_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(FINGERPRINT_ENV, raising=False)
    assert SecretFilter.from_env().filter({"token": SECRET})[0] == {"token": REDACTED}
    monkeypatch.setenv(FINGERPRINT_ENV, KEY)
    keyed = SecretFilter.from_env()
    assert keyed.filter({"token": SECRET})[0] == {"token": fingerprint(SECRET)}
    assert KEY not in repr(keyed) and KEY not in str(vars(type(keyed)))


# -- a secret appears nowhere ----------------------------------------------------------------


def record_secret_run(store: AuditStore) -> list[str]:
    """A run whose every filtered slot carries SECRET; returns the errors raised on the way."""
    errors: list[str] = []
    with store.start_run(
        run_id="secret-run",
        config={"llm": {"api_key": SECRET, "model": "m"}},
        settings={"vault": {"client_secret": SECRET}},
    ) as run:
        src = run.register_node(plugin_name="csv", node_type="source", node_id="src")
        llm = run.register_node(
            plugin_name="llm",
            node_type="transform",
            node_id="llm",
            config={"api_key": SECRET, "temperature": 0.5},
            config_hash=hashlib.sha256(SECRET.encode()).hexdigest(),  # the pipeline's own
        )
        try:  # refused: the error message must not carry the secret either
            run.register_node(
                plugin_name="bad", node_type="gate", config={"password": SECRET, "x": float("nan")}
            )
        except AuditJournalError as exc:
            errors.append(str(exc))
        row = run.create_row(source_node_id=src, row_index=0, data={"text": "hello"}, row_id="r0")
        tok = run.create_token(row_id=row)
        state = run.begin_node_state(token_id=tok, node_id=llm, step_index=1, input_data={})
        try:
            run.record_call(
                state_id=state,
                call_type="http",
                status="success",
                request={"api_key": SECRET, "body": {1, 2}},
            )
        except AuditJournalError as exc:
            errors.append(str(exc))
        run.record_call(
            state_id=state,
            call_type="llm",
            status="error",
            request={"headers": {"Authorization": f"Bearer {SECRET}"}, "prompt": "hi"},
            response={"access_token": SECRET, "text": "x"},
            error={"password": SECRET, "status_code": 401},
        )
        run.record_call(
            state_id=state,
            call_type="http",
            status="success",
            request={"session": SECRET},
            secret_fields=["session"],
        )
        run.complete_node_state(state, status="completed", output_data={"label": "ok"})
        run.record_preflight_result(
            result_type="readiness_check", name="api", result={"api_key": SECRET, "ok": True}
        )
        run.record_token_outcome(token_id=tok, outcome="completed")
    return errors


def every_byte_under(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_a_known_secret_appears_nowhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(FINGERPRINT_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    urls = [f"sqlite:///{tmp_path / 'audit' / 'landscape.db'}"]
    if os.environ.get(PG_ENV):
        urls.append(os.environ[PG_ENV])
    store = AuditStore.open(tmp_path / "audit", database_url=urls[-1])
    try:
        errors = record_secret_run(store)
        export_csv(store, "secret-run", tmp_path / "csv")
        bundle = extract_bundle(store.export_dir("secret-run"), Selection(row_id="r0"))
        write_bundle(bundle, tmp_path / "bundle.json")
        explained = lineage.explain_row(store, "secret-run", "r0")
        shown = lineagetext.render_explain(explained)
        texts: list[str] = []
        for url in urls:
            database = SqlDatabase(url)
            try:
                lineage.refresh_tables(store, ["secret-run"], database)
                with database.engine.connect() as conn:
                    for table in database_tables():
                        if "run_id" not in table.c:
                            continue
                        for row in conn.execute(
                            sa.select(table).where(table.c.run_id == "secret-run")
                        ):
                            texts += [str(v) for v in row]
            finally:
                if url != f"sqlite:///{tmp_path / 'audit' / 'landscape.db'}":
                    database.delete_run("secret-run")
                database.close()
    finally:
        store.close()
    assert len(errors) == 2, "both bad configs were refused"
    haystacks: dict[str, bytes] = {
        str(path): data for path, data in every_byte_under(tmp_path).items()
    }
    haystacks["sql text columns"] = "\n".join(texts).encode()
    haystacks["logs"] = caplog.text.encode()
    haystacks["errors"] = "\n".join(errors).encode()
    haystacks["explain"] = (json.dumps(explained, default=str) + shown).encode()
    for where, data in haystacks.items():
        assert SECRET.encode() not in data, where
        assert KEY.encode() not in data, where
    # the fingerprint stands where the value was: in the journal, the payloads, the export
    journal = b"".join(
        d for p, d in every_byte_under(tmp_path / "audit" / "runs" / "secret-run").items()
        if p.suffix == ".jsonl"
    )  # fmt: skip
    assert fingerprint(SECRET).encode() in journal
    records = json.loads((tmp_path / "bundle.json").read_text())["records"]
    call = next(r["record"] for r in records if r["record"]["record_type"] == "call")
    assert call["redacted"] == ["request", "response", "error"]
    assert call["request"]["headers"]["Authorization"] == fingerprint(f"Bearer {SECRET}")
    assert call["error"]["password"] == fingerprint(SECRET)


def database_tables() -> list[sa.Table]:
    from auditjournal.sql.schema import TABLES

    return list(TABLES)


def test_the_node_keeps_the_pipelines_config_hash_only_when_redacted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(FINGERPRINT_ENV, KEY)
    with AuditStore.open(tmp_path / "a", durability="none") as store:
        run = store.start_run(run_id="h", export=None, sql=False)
        given = hashlib.sha256(b"the clear config").hexdigest()
        run.register_node(
            plugin_name="p", node_type="source", node_id="n1", config={"api_key": "k"},
            config_hash=given,
        )  # fmt: skip
        with pytest.raises(InvalidEventError, match="not the hash"):
            run.register_node(
                plugin_name="p", node_type="source", config={"a": 1}, config_hash=given
            )
        run.complete()
        run.close()
        (node,) = [e for e in store.read_journal("h") if type(e).__name__ == "NodeRegistered"]
        assert node.config == {"api_key": fingerprint("k")}  # type: ignore[attr-defined]
        assert node.config_hash == given and node.redacted == ("config",)  # type: ignore[attr-defined]


def test_extra_secret_fields_per_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FINGERPRINT_ENV, raising=False)
    with AuditStore.open(tmp_path / "a", durability="none", secret_fields=["tenant"]) as store:
        run = store.start_run(run_id="x", config={"tenant": "acme", "n": 1}, export=None, sql=False)
        run.complete()
        run.close()
        started = next(iter(store.read_journal("x")))
        assert started.config == {"tenant": REDACTED, "n": 1}  # type: ignore[attr-defined]
        assert started.redacted == ("config",)  # type: ignore[attr-defined]
    with pytest.raises(AuditJournalError):
        AuditStore.open(tmp_path / "b", secret_fields="tenant")  # type: ignore[arg-type]
