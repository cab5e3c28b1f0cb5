"""Stage 5: fine-tune the model on the training data (LoRA with peft, on CPU or GPU) and resume a killed training."""
