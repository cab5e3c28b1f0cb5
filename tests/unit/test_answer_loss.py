"""The training loss projects only the positions that predict an answer token, and equals the loss
transformers computes from the labels over every position."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from workbench.finetune.lora import answer_loss
from workbench.finetune.tokens import IGNORE


def test_the_answer_only_loss_equals_the_full_loss_and_its_gradients():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                init_lora_weights=False))
    ids = torch.randint(0, 97, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row, as pad_batch right-pads
    labels = torch.full_like(ids, IGNORE)
    labels[0, 5:8], labels[1, 6:9], labels[2, 10:12] = ids[0, 5:8], ids[1, 6:9], ids[2, 10:12]
    tensors = {"input_ids": ids, "attention_mask": mask, "labels": labels}

    full = model(**tensors).loss
    full.backward()
    expected = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    ours = answer_loss(model, tensors)
    ours.backward()
    assert torch.allclose(ours, full, atol=1e-6)
    for got, want in zip((p.grad for p in model.parameters() if p.requires_grad), expected):
        assert torch.allclose(got, want, atol=1e-6)
