"""Sentence vectors kept across processes (`StoredEncoder`): a text is encoded once per encoder,
the file holds hashes and vectors but no text, two writers' vectors are merged, and a broken file
costs only time."""

from __future__ import annotations

import numpy as np

from workbench.points.encoder import StoredEncoder


class CountingEncoder:
    """A deterministic stand-in for the sentence encoder that records what it was asked to encode."""

    def __init__(self, name: str = "counting-1"):
        self.name = name
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        vectors = np.array([[len(text), sum(map(ord, text)) % 97, 1.0] for text in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_second_process_encodes_only_the_texts_the_first_did_not(tmp_path):
    first = CountingEncoder()
    vectors = StoredEncoder(first, folder=tmp_path).encode(["the fee is wrong", "send a new card"])
    assert first.calls == [["the fee is wrong", "send a new card"]]

    later = CountingEncoder()  # another process: nothing in memory, the same file
    again = StoredEncoder(later, folder=tmp_path).encode(["send a new card", "the fee is wrong", "raise my limit"])
    assert later.calls == [["raise my limit"]]
    np.testing.assert_array_equal(again[:2], vectors[::-1])
    assert StoredEncoder(CountingEncoder(), folder=tmp_path).encode([]).shape[0] == 0


def test_the_file_holds_no_text_and_each_encoder_has_its_own(tmp_path):
    StoredEncoder(CountingEncoder("model-a"), folder=tmp_path).encode(["a confidential complaint text"])
    stored = (tmp_path / "model-a.npz").read_bytes()
    assert b"confidential" not in stored and "confidential".encode("utf-32-le") not in stored
    other = CountingEncoder("model-b")
    StoredEncoder(other, folder=tmp_path).encode(["a confidential complaint text"])
    assert other.calls == [["a confidential complaint text"]]  # model-a's vector is not model-b's


def test_two_writers_at_once_keep_both_their_vectors(tmp_path):
    one, two = StoredEncoder(CountingEncoder(), folder=tmp_path), StoredEncoder(CountingEncoder(), folder=tmp_path)
    one.encode(["first text"])
    two.encode(["warm up"])  # read the file before `one` wrote its second text
    one.encode(["second text"])
    two.encode(["third text"])  # writes last: merges what `one` wrote meanwhile
    reader = CountingEncoder()
    StoredEncoder(reader, folder=tmp_path).encode(["first text", "second text", "third text", "warm up"])
    assert reader.calls == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_an_unreadable_file_is_computed_again_not_raised(tmp_path):
    (tmp_path / "counting-1.npz").write_bytes(b"not an npz file")
    encoder = CountingEncoder()
    vectors = StoredEncoder(encoder, folder=tmp_path).encode(["some text"])
    assert encoder.calls == [["some text"]] and vectors.shape == (1, 3)
    later = CountingEncoder()
    StoredEncoder(later, folder=tmp_path).encode(["some text"])  # and the file was written anew
    assert later.calls == []
