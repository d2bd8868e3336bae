"""The helpers every evidence reader and store writer goes through (safeio.py)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import rfc8785

from auditjournal.errors import (
    DuplicateMemberError,
    MalformedEvidenceError,
    StorageError,
    UnsafePathError,
)
from auditjournal.fs.safeio import (
    check_canonical,
    decode_strict,
    inside,
    open_regular,
    plain_name,
    read_regular,
    real_dir,
    reject_duplicate_members,
)


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"a":2}',
        b'{"a": 1, "b": {"c": [1, {"d": 0, "d": 0}]}}',
        b'[{"x":{}},{"y":1,"z":2,"y":3}]',
        b'{"\\u0061":1,"a":2}',  # the same name, written two ways
    ],
)
def test_a_member_named_twice_is_found_at_any_depth(text: bytes) -> None:
    with pytest.raises(DuplicateMemberError, match="twice"):
        reject_duplicate_members(text, "t")
    with pytest.raises(DuplicateMemberError):
        decode_strict(text, "t")


@pytest.mark.parametrize(
    "text", [b'{"a":1,"b":{"a":2}}', b'{ "a" : [ {"a":1}, {"a":2} ] }', b"[]", b'"a"']
)
def test_equal_names_in_different_objects_are_fine(text: bytes) -> None:
    reject_duplicate_members(text, "t")
    decode_strict(text, "t")


def test_deep_nesting_is_a_typed_error() -> None:
    for text in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        with pytest.raises(MalformedEvidenceError, match="nested too deeply"):
            decode_strict(text, "t")


def test_decode_strict_checks_the_type() -> None:
    with pytest.raises(MalformedEvidenceError, match="malformed"):
        decode_strict(b'{"a":1}', "t", list[int])
    assert decode_strict(b"[1,2]", "t", list[int]) == [1, 2]


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        (b'{"a":1,"b":[true,null,"x"]}', True),
        (b'{"a":1.5,"b":1e+21}', True),
        (b'{"a":1.0}', False),  # RFC 8785 writes 1
        (b'{"a":10000000000000000.0}', False),
        (b'{"a":1e16}', False),  # 10000000000000000
        (b'{"b":1,"a":2}', False),  # members unsorted
        (b'{"a": 1}', False),  # whitespace
        (b'{"a":"\\u00e9"}', False),  # escaped where RFC 8785 writes the character
        # UTF-16 code unit order puts U+1F600 (a surrogate pair) before U+FB01
        ('{"\U0001f600":2,"\ufb01":1}'.encode(), True),
        ('{"\ufb01":1,"\U0001f600":2}'.encode(), False),  # code point order
    ],
)
def test_check_canonical_is_exactly_rfc8785(line: bytes, ok: bool) -> None:
    value = json.loads(line)
    assert (rfc8785.dumps(value) == line) == ok, "the test's expectation is wrong"
    if ok:
        check_canonical(line, value, "t")
    else:
        with pytest.raises(MalformedEvidenceError, match="not the canonical JSON"):
            check_canonical(line, value, "t")


def test_check_canonical_names_a_repeat() -> None:
    with pytest.raises(DuplicateMemberError, match="'a' twice"):
        check_canonical(b'{"a":1,"a":2}', {"a": 2}, "t")


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "../x", "a\0b", "x" * 256, 5])
def test_plain_name_refuses(name: object) -> None:
    with pytest.raises(UnsafePathError):
        plain_name(name, "chunk")


def test_plain_name_accepts() -> None:
    assert plain_name("audit_trail.000.json", "chunk") == "audit_trail.000.json"


def test_open_regular_refuses_everything_but_a_regular_file(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_bytes(b"x")
    os.close(open_regular(regular, "f"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(regular)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    directory = tmp_path / "dir"
    directory.mkdir()
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for path, kind in [
            (fifo, "a FIFO"),
            (link, "a symbolic link"),
            (dangling, "a symbolic link"),
            (directory, "a directory"),
            (sock_path, "a socket"),
        ]:
            with pytest.raises(UnsafePathError, match=kind):
                open_regular(path, "f")
    finally:
        sock.close()
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing", "f")


def test_read_regular_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_regular(path, "f", 100) == b"x" * 100
    with pytest.raises(MalformedEvidenceError, match="more than the 99"):
        read_regular(path, "f", 99)


def test_read_regular_of_an_unreadable_file_is_typed(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    path = tmp_path / "f"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(StorageError):
        read_regular(path, "f", 10)


def test_real_dir_and_inside_refuse_links(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "a").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        real_dir(tmp_path / "base", "a", "b")
    with pytest.raises(UnsafePathError):
        inside(tmp_path / "base", "a", "b")
    assert not (tmp_path / "real" / "b").exists()
    assert real_dir(tmp_path / "base", "x", "y") == tmp_path / "base" / "x" / "y"
    assert (tmp_path / "base" / "x" / "y").is_dir()
    assert inside(tmp_path / "base", "new", "deeper") == tmp_path / "base" / "new" / "deeper"
    assert not (tmp_path / "base" / "new").exists()
    with pytest.raises(FileNotFoundError):
        real_dir(tmp_path / "base", "missing", create=False)
