"""What a LoRA checkpoint keeps of the random state, so that a resumed training repeats the
uninterrupted one's dropout masks: the CPU generator's always, the CUDA device's when training ran
there (`benchmarks/resume_check.py` measures the whole kill-and-resume on a GPU)."""

import warnings

import pytest
import torch

from workbench.finetune.lora import _device_rng, _restore_device_rng


def test_on_the_cpu_there_is_no_device_state_to_keep_or_restore():
    assert _device_rng(torch, "cpu") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _restore_device_rng(torch, None, "cpu")  # nothing to do, nothing said


def test_resuming_on_a_gpu_from_a_checkpoint_without_its_state_says_the_masks_will_differ():
    # No CUDA call is made when there is nothing to restore, so this runs on any machine.
    with pytest.warns(UserWarning, match="no CUDA random state .* other dropout masks"):
        _restore_device_rng(torch, None, "cuda:0")
