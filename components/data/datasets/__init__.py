"""Datasets: the contract, existing shards by manifest, weighted mixtures, and the generated
and real-footage evaluation sets."""
