"""Stage 4: training data and held-out test cases for each training point, exported in the formats trainers read.

`examples.build_training_data` makes the canonical frame (members, corrections, neighbours, a
regression set; one split per example; no leakage, `leakage`); `openai_jsonl` writes chat
fine-tuning JSONL and the test cases as a dataset `workbench run` evaluates; `export_hf` writes
Hugging Face datasets (chat rows, and tokens with IOB2 tags for NER); `export_spacy` writes
DocBins and a config for a spaCy baseline, trains it and turns its answers into predictions.
"""
