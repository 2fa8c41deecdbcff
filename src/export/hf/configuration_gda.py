# Configuration of a gda model exported with `gda export --format hf`.
# Written by the gda project (src/export/hf/); loaded by transformers with
# trust_remote_code=True. The keys are gda's own model keys (docs/spec.md,
# section [model]), resolved: kv_heads, noise_kv_heads, mlp_hidden and
# lambda_init hold the values the run trained with, never 0 or [].

from transformers import PretrainedConfig


class GdaConfig(PretrainedConfig):
    model_type = "gda"
    # Names other libraries look for (lm-eval, generate's cache) mapped to gda's.
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "n_layers"}

    def __init__(
        self,
        attention="gda",
        vocab_size=256,
        d_model=128,
        n_layers=4,
        head_dim=8,
        heads=4,
        signal_heads=24,
        noise_heads=6,
        kv_heads=6,
        noise_kv_heads=6,
        noise_scope="group",
        mlp_hidden=352,
        rope_theta=10000.0,
        norm_eps=1e-5,
        tie_embeddings=False,
        lambda_init=None,
        init_std=0.02,
        max_position_embeddings=128,
        use_cache=True,
        **kwargs,
    ):
        if attention not in ("gda", "standard"):
            raise ValueError(f"attention = {attention!r}; allowed: 'gda', 'standard'")
        if noise_scope not in ("group", "one"):
            raise ValueError(f"noise_scope = {noise_scope!r}; allowed: 'group', 'one'")
        self.attention = attention
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_layers = n_layers
        self.head_dim = head_dim
        self.heads = heads
        self.signal_heads = signal_heads
        self.noise_heads = noise_heads
        self.kv_heads = kv_heads
        self.noise_kv_heads = noise_kv_heads
        self.noise_scope = noise_scope
        self.mlp_hidden = mlp_hidden
        self.rope_theta = rope_theta
        self.norm_eps = norm_eps
        self.tie_embeddings = tie_embeddings
        # gda's default schedule, 0.8 − 0.6·exp(−0.3·l), when none is given.
        if lambda_init is None:
            import math

            lambda_init = [0.8 - 0.6 * math.exp(-0.3 * l) for l in range(n_layers)]
        if len(lambda_init) != n_layers:
            raise ValueError(f"lambda_init has {len(lambda_init)} values for {n_layers} layers")
        self.lambda_init = list(lambda_init)
        self.init_std = init_std
        self.max_position_embeddings = max_position_embeddings
        self.use_cache = use_cache
        kwargs.setdefault("tie_word_embeddings", tie_embeddings)
        super().__init__(**kwargs)
