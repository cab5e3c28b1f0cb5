"""Charts, the HTML report and the notebook error browser."""
