"""The embedded base is dequantized from its GGUF once and then loaded from a float32 copy: the
same weights, tokenizer and logits, in a fraction of the time (16 s against under 1 s on 2 cores).
Its tokenizer is converted from the GGUF once too, and kept (6 s against 0.1 s)."""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.integration


def test_the_base_is_dequantized_once_and_the_copy_gives_the_same_model(tmp_path, monkeypatch):
    """(At the end, the copy it made is handed to the suite's own cache when that has none, so the
    first training after this test does not dequantize the same GGUF again: 12 s.)"""
    import torch
    import transformers

    from workbench.finetune import tokens
    from workbench.finetune.base_model import (
        DONE,
        KEPT,
        _write_folder,
        dequantized_folder,
        kept_tokenizer_folder,
        load_base,
    )
    from workbench.models.llama_cpp import embedded_model_path

    suites_folder = dequantized_folder(embedded_model_path())  # in the cache the other tests use
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    folder = dequantized_folder(embedded_model_path())
    assert folder.parent == tmp_path / "cache" / "bases" and not folder.exists()
    tokenizer_loads = []
    real_tokenizer = transformers.AutoTokenizer.from_pretrained

    def tokenizer_spy(*args, **kwargs):
        tokenizer_loads.append((str(args[0]), kwargs.get("gguf_file")))
        return real_tokenizer(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_spy)
    # The length check's tokenizer first (as `workbench data` or a round needs it): converted and kept.
    tokens._load_tokenizer.cache_clear()
    counted = tokens.load_tokenizer()
    kept = kept_tokenizer_folder(embedded_model_path())
    assert tokenizer_loads == [(str(embedded_model_path().parent), embedded_model_path().name)]
    assert (kept / KEPT).exists() and kept.parent == tmp_path / "cache" / "tokenizers"
    first, tokenizer = load_base(device="cpu")  # dequantized; its tokenizer from the kept copy, not converted again
    assert tokenizer_loads[1:] == [(str(kept), None)]
    assert (folder / DONE).exists() and (folder / "model.safetensors").exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no partial copy left

    gguf_loads = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        gguf_loads.append(kwargs.get("gguf_file"))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    second, copied_tokenizer = load_base(device="cpu")
    assert gguf_loads == [None]  # the copy, not the GGUF
    assert copied_tokenizer.chat_template == tokenizer.chat_template
    assert copied_tokenizer.pad_token == tokenizer.pad_token == "<|im_end|>"
    text = '{"label": "complaint"}<|im_end|>'
    assert copied_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    ours, theirs = first.state_dict(), second.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    ids = tokenizer("The fee you charged me is wrong.", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(first(**ids).logits, second(**ids).logits)
    # The tied input/output embeddings stay one tensor, as in the GGUF-loaded model.
    assert second.lm_head.weight.data_ptr() == second.model.embed_tokens.weight.data_ptr()

    # Another process's length check, with no kept tokenizer: the dequantized copy's, not the GGUF's.
    shutil.rmtree(kept)
    tokens._load_tokenizer.cache_clear()
    try:
        again = tokens.load_tokenizer()
    finally:
        tokens._load_tokenizer.cache_clear()  # later tests load their own cache's
    assert tokenizer_loads[-1] == (str(folder), None) and not kept.exists()
    chat = [{"role": "system", "content": "Label it."}, {"role": "user", "content": "The fee is wrong."},
            {"role": "assistant", "content": '{"label": "complaint"}'}]
    for other in (tokenizer, again):
        assert other.chat_template == counted.chat_template and other.pad_token == counted.pad_token
        assert tokens.tokenize_chat(other, chat, "row 0", 256) == tokens.tokenize_chat(counted, chat, "row 0", 256)

    if not (suites_folder / DONE).exists():  # the same atomic write the workbench's own copy takes
        _write_folder(suites_folder, lambda partial: shutil.copytree(folder, partial, dirs_exist_ok=True), DONE)
