"""Stage 1: run prompt variants over labelled data (variants, templates, few-shot, runner, cache)."""
