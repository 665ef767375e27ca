"""twin/analysis."""
