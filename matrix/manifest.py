"""An artifact's manifest: what its folder held when the stage finished, so damage is seen, never read.

Each stage's worker writes the manifest of its folder into `result.json` (key `manifest`) before the folder
is renamed into place: every file's path and size, and the sha256 of files up to `HASH_LIMIT` bytes.
Bigger files (model weights, merged checkpoints) are checked by size only: hashing gigabytes at every
`matrix run` would cost minutes, and the damage seen in practice — a deleted file, a truncated copy, a
partial sync — changes the size. `stage.log` is not listed: it is a diagnostic, not part of the result.

`problems(dir)` compares a folder with its manifest. An artifact with no `result.json`, or one that is not
JSON, is damaged; an artifact written before manifests existed (no `manifest` key) is only checked for a
readable `result.json`.

Who checks: `matrix run` before using any stored artifact (a damaged one is removed and its stage runs
again, with a warning naming it), `matrix report --details` before reading scores, and `matrix verify`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
UNLISTED = (RESULT_FILE, "stage.log")
HASH_LIMIT = 16 * 2**20  # bytes: files up to this size are hashed, larger ones checked by size
VERSION = 1


def build(folder: Path) -> dict[str, Any]:
    """The manifest of a finished artifact folder (call before writing its result.json)."""
    folder = Path(folder)
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(_files(folder)):
        rel = path.relative_to(folder).as_posix()
        if rel in UNLISTED:
            continue
        size = path.stat().st_size
        files[rel] = {"size": size, "sha256": _sha256(path) if size <= HASH_LIMIT else None}
    return {"version": VERSION, "hash_limit": HASH_LIMIT, "files": files}


def read_result(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(payload of result.json, None), or (None, what is wrong with it)."""
    path = Path(folder) / RESULT_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{RESULT_FILE} is missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{RESULT_FILE} is unreadable ({type(e).__name__}: {e})"
    if not isinstance(payload, dict) or not isinstance(payload.get("result", {}), dict):
        return None, f"{RESULT_FILE} does not hold a stage result"
    return payload, None


def problems(folder: Path) -> list[str]:
    """What is wrong with an artifact folder, compared with its manifest; [] when intact."""
    folder = Path(folder)
    if not folder.is_dir():
        return ["the artifact folder is missing"]
    payload, error = read_result(folder)
    if error:
        return [error]
    manifest = payload.get("manifest")
    if manifest is None:
        return []  # written before manifests existed: nothing more to compare with
    out = []
    for rel, entry in manifest.get("files", {}).items():
        path = folder / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            out.append(f"{rel} is missing")
            continue
        if size != entry["size"]:
            out.append(f"{rel} has {size} bytes, {entry['size']} when written")
        elif entry.get("sha256") and _sha256(path) != entry["sha256"]:
            out.append(f"{rel} has changed since it was written (sha256 differs)")
    return out


def has_manifest(folder: Path) -> bool:
    payload, _ = read_result(folder)
    return bool(payload and "manifest" in payload)


def _files(folder: Path):
    for root, _dirs, names in os.walk(folder):
        for name in names:
            yield Path(root) / name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def check_store(store) -> tuple[int, list[tuple[Any, Path, list[str]]], int]:
    """Every finished stage of a run's store against its manifest: (artifacts checked, [(record, folder,
    problems)] for the damaged ones, how many had no manifest to compare with)."""
    checked, damaged, unlisted = 0, [], 0
    for rec in sorted(store.stages().values(), key=lambda r: (r.kind, r.label)):
        if rec.status != "done":
            continue
        folder = store.artifact_dir(rec.key, rec.kind)
        checked += 1
        found = problems(folder)
        if found:
            damaged.append((rec, folder, found))
        elif not has_manifest(folder):
            unlisted += 1
    return checked, damaged, unlisted
