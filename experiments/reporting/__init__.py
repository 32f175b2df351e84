"""What people look at: ablation tables over seeds (``report``), and PNG pictures attached to
runs (token-score heat maps, mask + reconstruction grids, tokenizer figures)."""
