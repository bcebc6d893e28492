"""The model cache (curate.models.weights, open_clip_models, ``curate models``): references resolved
without network, one-line errors naming both fixes, ``pull`` from a loopback URL, ``list`` with
sizes and hashes, state dicts read safely."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from curate.cli import main
from curate.errors import UserError
from curate.models import open_clip_models
from curate.models.weights import cache_dir, cached_files, load_state_dict, resolve_weights, weights_record


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@contextlib.contextmanager
def serving(directory: Path):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _hub_file(cache: Path, repo: str, filename: str, data: bytes) -> Path:
    """A file laid out as huggingface_hub caches it (what `curate models pull` leaves)."""
    root = cache / "hf" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text("abc123")
    path = root / "snapshots" / "abc123" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_cache_dir_follows_the_environment(cache, monkeypatch, tmp_path) -> None:
    assert cache_dir() == cache
    monkeypatch.delenv("CURATE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "curate"


def test_missing_references_are_one_line_errors_naming_both_fixes(cache) -> None:
    for ref in ("hf-hub:LAION-AI/watermark-detection/model.pt", "https://example.org/w/model.pt"):
        with pytest.raises(UserError) as err:
            resolve_weights(ref, "watermark: weights")
        assert str(err.value) == (f"watermark: weights: {ref} is not in the model cache {cache} and this run does not "
                                  f"download: run `curate models pull {ref}` on a machine with internet (then copy the "
                                  "cache here or set CURATE_CACHE), or give a local path to the weights")
    with pytest.raises(UserError, match=r"^aesthetic: weights: /no/such\.pth does not exist"):
        resolve_weights("/no/such.pth", "aesthetic: weights")


def test_a_cached_hub_file_resolves_without_network(cache) -> None:
    path = _hub_file(cache, "org/heads", "head.safetensors", b"x")
    assert resolve_weights("hf-hub:org/heads/head.safetensors", "w") == path
    assert cached_files() == [("hf-hub:org/heads/head.safetensors", path)]


def test_a_cached_tag_resolves_with_the_tags_preprocessing_and_hash(cache) -> None:
    """ViT-B-32:openai from the cache as `curate models pull` leaves it: QuickGELU and OpenAI's
    preprocessing come with the tag; the manifest record carries the file's sha256."""
    data = b"weights of a tag"
    path = _hub_file(cache, "timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors", data)
    ref = open_clip_models.resolve("ViT-B-32", "openai")
    assert ref.weights == str(path)
    assert ref.options["force_quick_gelu"] is True and ref.options["image_interpolation"] == "bicubic"
    assert ref.record["sha256"] == hashlib.sha256(data).hexdigest()
    assert ref.model_id == f"ViT-B-32@{hashlib.sha256(data).hexdigest()[:16]}"


def test_pull_a_url_into_the_cache_then_list_it(cache, tmp_path, capsys) -> None:
    served = tmp_path / "served"
    served.mkdir()
    save_file({"weight": torch.ones(2, 3)}, str(served / "head.safetensors"))
    with serving(served) as base:
        url = f"{base}/head.safetensors"
        assert main(["models", "pull", url]) == 0
    path = resolve_weights(url, "w")  # no server now: the cache answers
    assert path.read_bytes() == (served / "head.safetensors").read_bytes()
    assert load_state_dict(path)["weight"].tolist() == [[1.0] * 3] * 2
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed == [{"ref": url, "path": str(path), "bytes": path.stat().st_size,
                       "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]


def test_pull_refuses_a_tag_the_model_does_not_have(capsys) -> None:
    assert main(["models", "pull", "ViT-B-32:nope"]) == 2
    assert capsys.readouterr().err.startswith("curate: error: models pull: 'ViT-B-32:nope': give MODEL:TAG with a tag "
                                              "of ViT-B-32 (openai,")


def test_state_dicts_load_safely(tmp_path) -> None:
    checkpoint = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": {"module.w": torch.zeros(2)}}, checkpoint)
    assert list(load_state_dict(checkpoint)) == ["w"]  # open_clip_train's checkpoint: DDP prefix stripped

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match=r"evil\.pt: not a readable weights file \(UnpicklingError"):
        load_state_dict(tmp_path / "evil.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(UserError, match=r"list\.pt: holds a list, not a state dict"):
        load_state_dict(tmp_path / "list.pt")


def test_weights_record_hashes_files_and_directories(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"1")
    record = weights_record("local", tmp_path / "d")
    assert record.bytes == 1 and len(record.sha256) == 64
    (tmp_path / "d" / "a").write_bytes(b"2")
    assert weights_record("local", tmp_path / "d").sha256 != record.sha256
