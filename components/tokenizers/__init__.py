"""Tokenizers: FSQ / LFQ quantizers, the MAGVIT-style 3-D CNN autoencoder, the adaptive
(scorer + top-k) tokenizer trained by ``python run.py pretrain_tokenizer``."""
