"""Stage 4: errors become training points (recurring failure modes), and suspected label errors
are set apart from them."""
