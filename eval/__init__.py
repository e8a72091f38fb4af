"""Generation backends, ROUGE scoring with bootstrap intervals, and the comparison report."""
