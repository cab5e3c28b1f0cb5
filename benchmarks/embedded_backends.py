"""Compare two ways of running the embedded SmolLM2-135M-Instruct GGUF on this machine's CPU.

- transformers: ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)``, which
  dequantises the Q4_1 GGUF to float32; greedy decoding at batch 1 and batch 8 (left padding).
- llama.cpp in-process (``llama_cpp.Llama``, as ``workbench.models.LlamaCppModel`` does): batch 1,
  unconstrained and constrained to the answer schema (``response_format`` json_object + schema),
  plus the constrained mode with ``reset()`` before each prompt, i.e. without llama-cpp-python's
  reuse of the KV cache for the prompt prefix shared with the previous call.

Each backend runs in its own subprocess so that memory figures are not mixed. Prompts: the first
16 rows of data/complaint_triage/test.jsonl, variant "definitions"; greedy, max 24 new tokens.
Figures: load s (tokenizer + weights, imports excluded), RSS MiB after load, peak RSS so far,
generated tokens/s (EOS excluded, wall time including prefill), s per prompt, the share of answers
that `parse_answer` reads (parse ok) and the share matching the gold label (acc). No asserts.

Run: .venv/bin/python benchmarks/embedded_backends.py   (add --max-wait 0 to skip waiting for a
quiet machine; the script waits while the 1-minute load average is above --max-load).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_PROMPTS, BATCH, MAX_NEW, THREADS = 16, 8, 24, 2


def rss_mib(key: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def setup():
    from workbench.core.data import load_dataset
    from workbench.core.task import load_task
    from workbench.prompting.templates import render_messages
    from workbench.prompting.variants import parse_variant

    task = load_task(ROOT / "data/complaint_triage/task.yaml")
    variant = parse_variant("definitions")
    rows = load_dataset(ROOT / "data/complaint_triage/test.jsonl", task).head(N_PROMPTS)
    prompts = [(render_messages(task, variant, text), text, gold) for text, gold in zip(rows["text"], rows["label"])]
    return task, variant, prompts


def summarise(task, mode, prompts, answers, tokens, seconds, prompt_tokens):
    from workbench.core.answers import parse_answer

    parsed = [parse_answer(task, text, inp, truncated=n >= MAX_NEW) for text, (_, inp, _), n in zip(answers, prompts, tokens)]
    print(f"{mode}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return {
        "mode": mode, "tok_s": sum(tokens) / seconds, "s_prompt": seconds / len(prompts),
        "prompt_tokens": prompt_tokens, "peak": rss_mib("VmHWM"),
        "parse_ok": 100 * sum(p.parse_error is None for p in parsed) / len(parsed),
        "acc": 100 * sum(p.prediction == gold for p, (_, _, gold) in zip(parsed, prompts)) / len(parsed),
        "answers": answers, "tokens": tokens, "loadavg": os.getloadavg()[0],
    }


def run_transformers() -> dict:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    started = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    from workbench.models.llama_cpp import embedded_model_path

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    torch.set_num_threads(THREADS)
    task, _, prompts = setup()
    imported, rss_base = time.perf_counter() - started, rss_mib()
    path = embedded_model_path()
    started = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tok_s = time.perf_counter() - started
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    load = time.perf_counter() - started
    out = {"backend": "transformers", "import_s": imported, "rss_base": rss_base, "load_s": load,
           "tokenizer_s": tok_s, "rss": rss_mib(), "dtype": str(model.dtype), "modes": []}
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    gen_eos = model.generation_config.eos_token_id
    eos = {tok.eos_token_id, *(gen_eos if isinstance(gen_eos, list) else [gen_eos])}
    texts = [tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) for msgs, _, _ in prompts]

    def generate(batch_texts):
        enc = tok(batch_texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=tok.pad_token_id)
        results = []
        for row in ids[:, enc["input_ids"].shape[1]:].tolist():
            n = next((i for i, t in enumerate(row) if t in eos), len(row))
            results.append((tok.decode(row[:n], skip_special_tokens=True), n))
        return results, int(enc["attention_mask"].sum())

    generate(texts[:1])  # warm-up, not timed
    for batch in (1, BATCH):
        answers, tokens, prompt_tokens = [], [], 0
        started = time.perf_counter()
        for i in range(0, len(texts), batch):
            results, n_in = generate(texts[i:i + batch])
            answers += [a for a, _ in results]
            tokens += [n for _, n in results]
            prompt_tokens += n_in
        seconds = time.perf_counter() - started
        out["modes"].append(summarise(task, f"batch {batch}", prompts, answers, tokens, seconds, prompt_tokens))
    return out


def run_llama_cpp() -> dict:
    from workbench.models.llama_cpp import embedded_model_path
    from workbench.prompting.templates import answer_schema

    started = time.perf_counter()
    from llama_cpp import Llama

    task, variant, prompts = setup()
    imported, rss_base = time.perf_counter() - started, rss_mib()
    started = time.perf_counter()
    llama = Llama(model_path=str(embedded_model_path()), n_ctx=4096, n_threads=THREADS,
                  n_threads_batch=THREADS, verbose=False)
    out = {"backend": "llama.cpp", "import_s": imported, "rss_base": rss_base,
           "load_s": time.perf_counter() - started, "rss": rss_mib(), "modes": []}
    schema = {"type": "json_object", "schema": answer_schema(task, variant)}
    for mode, fmt, reset in (("free", None, False), ("json schema", schema, False), ("json, no prefix reuse", schema, True)):
        def call(msgs, max_tokens=MAX_NEW):
            if reset:
                llama.reset()
            kwargs = {"response_format": fmt} if fmt else {}
            return llama.create_chat_completion(messages=msgs, temperature=0.0, max_tokens=max_tokens, **kwargs)

        call(prompts[-1][0], 2)  # warm-up on another prompt (its shared prefix stays cached unless reset)
        answers, tokens, prompt_tokens = [], [], 0
        started = time.perf_counter()
        for msgs, _, _ in prompts:
            response = call(msgs)
            answers.append(response["choices"][0]["message"]["content"] or "")
            tokens.append(response["usage"]["completion_tokens"])
            prompt_tokens += response["usage"]["prompt_tokens"]
        seconds = time.perf_counter() - started
        out["modes"].append(summarise(task, mode, prompts, answers, tokens, seconds, prompt_tokens))
    return out


def wait_for_quiet(max_load: float, max_wait: float) -> float:
    deadline = time.time() + max_wait
    while os.getloadavg()[0] > max_load and time.time() < deadline:
        print(f"load average {os.getloadavg()[0]:.2f} > {max_load}; waiting...", file=sys.stderr)
        time.sleep(30)
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["transformers", "llama.cpp"], help=argparse.SUPPRESS)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for a quiet machine")
    args = parser.parse_args()
    if args.backend:
        print(json.dumps(run_transformers() if args.backend == "transformers" else run_llama_cpp()))
        return
    results = []
    for backend in ("transformers", "llama.cpp"):
        start_load = wait_for_quiet(args.max_load, args.max_wait)
        proc = subprocess.run([sys.executable, __file__, "--backend", backend], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            sys.exit(f"{backend} failed:\n{proc.stderr[-3000:]}")
        results.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "start_load": start_load})
    print(f"{N_PROMPTS} prompts (complaint_triage, definitions), greedy, max {MAX_NEW} new tokens, {THREADS} threads, "
          f"{os.cpu_count()} CPUs; 'load': 1-minute load average as the mode ended (~2 is this run's own threads)")
    header = f"{'backend':<13}{'mode':<22}{'load s':>7}{'RSS MiB':>8}{'peak':>6}{'tok/s':>7}{'s/prompt':>9}{'parse ok %':>11}{'acc %':>6}{'load':>5}"
    print(header + "\n" + "-" * len(header))
    for r in results:
        for m in r["modes"]:
            print(f"{r['backend']:<13}{m['mode']:<22}{r['load_s']:>7.1f}{r['rss']:>8.0f}{m['peak']:>6.0f}{m['tok_s']:>7.1f}"
                  f"{m['s_prompt']:>9.2f}{m['parse_ok']:>11.0f}{m['acc']:>6.0f}{m['loadavg']:>5.1f}")
    tf, lc = results
    print(f"\ntransformers: import {tf['import_s']:.1f} s, tokenizer {tf['tokenizer_s']:.1f} s + weights "
          f"{tf['load_s'] - tf['tokenizer_s']:.1f} s, RSS before load {tf['rss_base']:.0f} MiB, weights {tf['dtype']},"
          f" load avg at start {tf['start_load']:.2f}")
    print(f"llama.cpp: import {lc['import_s']:.1f} s, RSS before load {lc['rss_base']:.0f} MiB, load avg at start {lc['start_load']:.2f}")
    reference = tf["modes"][0]["answers"]
    for r in results:
        for m in r["modes"]:
            same = sum(a.strip() == b.strip() for a, b in zip(m["answers"], reference))
            print(f"  {r['backend']} {m['mode']}: {m['prompt_tokens']} prompt tokens, {sum(m['tokens'])} generated, "
                  f"answer text = transformers batch 1 on {same}/{N_PROMPTS}; first: {m['answers'][0]!r}")
    best = min(tf["modes"], key=lambda m: m["s_prompt"])
    lj = lc["modes"][1]
    ratio = best["s_prompt"] / lj["s_prompt"]
    print(f"\nConclusion: per answer, llama.cpp with the schema takes {lj['s_prompt']:.2f} s vs {best['s_prompt']:.2f} s for "
          f"transformers {best['mode']} ({'llama.cpp' if ratio >= 1 else 'transformers'} x{max(ratio, 1 / ratio):.1f} faster), "
          f"loads in {lc['load_s']:.1f} s vs {tf['load_s']:.1f} s, holds {lc['rss']:.0f} vs {tf['rss']:.0f} MiB after load "
          f"(peak {lj['peak']:.0f} vs {best['peak']:.0f}), and parses {lj['parse_ok']:.0f}% vs {best['parse_ok']:.0f}% of answers.")


if __name__ == "__main__":
    main()
