"""The embedded base is dequantized from its GGUF once and then loaded from a float32 copy: the
same weights, tokenizer and logits, in a fraction of the time (16 s against under 1 s on 2 cores)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_the_base_is_dequantized_once_and_the_copy_gives_the_same_model(tmp_path, monkeypatch):
    import torch
    import transformers

    from workbench.finetune.base_model import DONE, dequantized_folder, load_base
    from workbench.models.llama_cpp import embedded_model_path

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    folder = dequantized_folder(embedded_model_path())
    assert folder.parent == tmp_path / "cache" / "bases" and not folder.exists()
    first, tokenizer = load_base(device="cpu")
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
