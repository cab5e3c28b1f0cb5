"""The same `train_adapter` under a multi-process launcher (torchrun, which `accelerate launch
--multi_gpu` also drives): two CPU processes (gloo) each take half of every batch, their gradients
are averaged, and only the first writes checkpoints, the adapter and training.json."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_lora import CHATS

pytestmark = pytest.mark.integration

SCRIPT = """
import json, os, sys
from workbench.finetune.lora import AdapterSettings, train_adapter
chats = json.loads(open(sys.argv[1]).read())
done = train_adapter(chats, sys.argv[2], settings=AdapterSettings(max_steps=2, batch_size=4, checkpoint_every=1),
                     progress=False, device="cpu")
# One file per process: two processes printing at once may interleave their lines on stdout.
rank = os.environ["RANK"]
open(f"{sys.argv[2]}.losses-{rank}.json", "w").write(json.dumps([done.losses, done.record["processes"]]))
"""


def test_two_processes_share_each_batch_and_one_writes_the_adapter(tmp_path):
    from workbench.finetune.lora import AdapterSettings, train_adapter

    rows, script = tmp_path / "rows.json", tmp_path / "train.py"
    rows.write_text(json.dumps(CHATS))
    script.write_text(SCRIPT)
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script), str(rows), str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    reports = [json.loads((tmp_path / f"two.losses-{rank}.json").read_text()) for rank in (0, 1)]
    assert all(processes == 2 for _, processes in reports)  # two processes, one training
    losses = reports[0][0]
    assert reports[1][0] == losses  # the loss each step is the processes' mean, the same in both
    record = json.loads((tmp_path / "two" / "training.json").read_text())
    assert record["processes"] == 2 and record["steps"] == 2
    assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").exists()
    # Before any update both trainings see the same four rows on the same model: the first loss agrees
    # with one process's (two halves' means against one mean over the batch, so to a small tolerance).
    one = train_adapter(CHATS, tmp_path / "one", progress=False, device="cpu",
                        settings=AdapterSettings(max_steps=2, batch_size=4, checkpoint_every=1))
    assert one.record["processes"] == 1 and losses[0] == pytest.approx(one.losses[0], rel=0.05)
