#!/usr/bin/env bash
# The GPU check as one prepared command (benchmarks/gpu_check.py says what it measures): LoRA on a
# transformers model folder on CUDA, the tuned model answering through the workbench's runner, wall
# times. On a machine without CUDA it runs on the CPU, sized down (4 steps, 8 test cases).
#   bash benchmarks/gpu_check.sh --model-dir /models/Qwen2.5-0.5B-Instruct
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" benchmarks/gpu_check.py "$@"
