"""``verify``'s check of an export's live checkpoints against its sealed tree."""

from __future__ import annotations

from pathlib import Path

from ..errors import AuditJournalError
from ..export.livecheckpoints import checkpoint_file_name, export_origin
from ..fs.safeio import read_regular
from ..proofs.signednote import NoteVerifier, open_checkpoint, read_checkpoint

__all__ = ["check_tree_heads"]


def check_tree_heads(
    heads: dict[int, str],
    prefix_roots: dict[int, str],
    directory: Path,
    prefix_name: str,
    run_id: str,
    public_key: Path | None,
) -> list[str]:
    """Every live checkpoint the manifest lists is a prefix of the sealed tree (its root is
    the root of the first ``tree_size`` records), and its file says the same."""
    problems = []
    for size, root in sorted(heads.items()):
        if prefix_roots.get(size) != root:
            problems.append(
                f"live checkpoint at {size} records is not a prefix of the sealed tree"
                " (a record before it was changed, removed or reordered)"
            )
            continue
        path = directory / f"{prefix_name}.checkpoints" / checkpoint_file_name(size)
        origin = export_origin(run_id)
        try:
            data = read_regular(path, "checkpoint", 1 << 20)
            checkpoint, note = read_checkpoint(data)
            if note is not None and public_key is not None:
                open_checkpoint(data, [NoteVerifier.from_pem_file(origin, public_key)])
        except FileNotFoundError:
            problems.append(f"live checkpoint file {path.name} is missing")
            continue
        except AuditJournalError as exc:
            problems.append(f"live checkpoint file {path.name}: {exc}")
            continue
        if (checkpoint.origin, checkpoint.size, checkpoint.root_hash.hex()) != (origin, size, root):
            problems.append(f"live checkpoint file {path.name} does not match the manifest")
    return problems
