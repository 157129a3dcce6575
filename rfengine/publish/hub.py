"""``--push``: the published folder uploaded to the Hugging Face Hub with ``huggingface_hub``.

The token is the library's own (``HF_TOKEN``, or ``hf auth login``'s stored one); rfengine
never reads, prints or writes it. Errors are one line, with any token text removed.
"""

from __future__ import annotations

import os
from pathlib import Path

from rfengine.errors import InputError
from rfengine.store.owned import MARK

#: above this many bytes, ``upload_large_folder`` (resumable, multi-commit) is used
LARGE = 5 * 2**30


def _scrub(text: str) -> str:
    token = os.environ.get("HF_TOKEN")
    return text.replace(token, "***") if token else text


def push(folder: Path, repo_id: str, *, private: bool = False) -> str:
    """Create the dataset repository ``repo_id`` if needed and upload ``folder`` (without
    rfengine's mark); returns the repository's URL."""
    from huggingface_hub import HfApi

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InputError(f"--push: expected ORG/NAME, got {repo_id!r}")
    api = HfApi()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if size > LARGE:
            api.upload_large_folder(
                repo_id=repo_id, folder_path=folder, repo_type="dataset", ignore_patterns=[MARK]
            )
        else:
            api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                repo_type="dataset",
                ignore_patterns=[MARK],
                commit_message="Publish with rfengine",
            )
    except Exception as exc:  # the Hub's HTTP errors, httpx's network errors, OSError: one line
        text = str(exc).strip()
        first = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        raise InputError(
            f"--push {repo_id}: {_scrub(first)} (the folder {folder} is "
            "complete: push it again, or upload it yourself)"
        ) from None
    return str(url)
