"""Stage 2: scores, uncertainty, consistency, agreement and errors."""
