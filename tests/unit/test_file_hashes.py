"""A file's SHA-256 follows its content: a file rewritten in place (an adapter retrained into the
same folder) gets a new hash, so its answers are not served from the old model's cache entries."""

import hashlib
import os

from workbench.finetune.base_model import file_sha256


def test_a_file_rewritten_in_place_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(b"first training")
    first = file_sha256(str(weights))
    assert first == hashlib.sha256(b"first training").hexdigest()
    weights.write_bytes(b"second training")  # the same path, the same size class, new content
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert file_sha256(str(weights)) == hashlib.sha256(b"second training").hexdigest() != first


def test_an_unchanged_file_is_read_once(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "base.gguf"
    weights.write_bytes(b"weights")
    assert file_sha256(str(weights)) == hashlib.sha256(b"weights").hexdigest()
    reads = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        reads.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    file_sha256(str(weights))
    assert str(weights.resolve()) not in reads and str(weights) not in reads
