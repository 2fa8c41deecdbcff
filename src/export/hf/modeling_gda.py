# A gda model in PyTorch for Hugging Face transformers, exported with
# `gda export --format hf`. Written by the gda project (src/export/hf/); it
# computes what gda's Rust model computes (src/model/), with the same tensor
# names, so model.safetensors is gda's checkpoint as it is:
#
# - tok_emb, blocks.N.{attn_norm, attn, mlp_norm, mlp}, norm, lm_head (absent
#   when tie_embeddings: the head is tok_emb);
# - pre-RMSNorm blocks: x + attn(attn_norm(x)), then x + mlp(mlp_norm(x));
#   RMSNorm computed in fp32; SwiGLU MLP down(silu(gate x) * up x);
# - RoPE, rotate-half layout, on every query and key head;
# - attention "standard": multi-head attention, GQA when kv_heads < heads
#   (query head i reads K/V head i // (heads / kv_heads));
# - attention "gda": H_s signal heads in H_n groups of G = H_s / H_n; signal
#   head i reads K1/V head i // (H_s / kv_heads); noise head j (one per group)
#   reads K2 head j // (H_n / noise_kv_heads) and V head j // (H_n / kv_heads);
#   values are 2d wide; each signal head's output is
#   softmax(Q1 K1ᵀ/√d) V − λ · softmax(Q2 K2ᵀ/√d) V for the noise head of its
#   group (noise_scope "group": all G heads; "one": only the first head of a
#   group, the others are plain softmax heads), then the shared subln RMSNorm
#   over 2d (eps 1e-5) scaled by (1 − λ_init);
#   λ = exp(λq1·λk1) − exp(λq2·λk2) + λ_init, λ_init per layer from the config.
#   DIFF (1:1) is G = 1; the no-share ablation is noise_kv_heads = noise_heads.
#
# forward(input_ids, attention_mask=None, ...) takes input_ids first (lm-eval
# calls model(input_ids)). With an attention mask, padded keys are masked and
# positions count only the unmasked tokens, so right and left padding both
# give each sequence the logits it has alone. generate() works with a KV cache
# (transformers' DynamicCache: K1 and K2 of a layer are stored as one key
# tensor, heads [K1..., K2...]) and without one (use_cache=False).

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_gda import GdaConfig

try:  # transformers 5: init functions that skip weights already loaded
    from transformers import initialization as _init
except ImportError:  # transformers 4
    _init = nn.init

try:
    from transformers.cache_utils import DynamicCache
except ImportError:  # pragma: no cover
    DynamicCache = None

# transformers 5.2x names the cache field `cache`, earlier versions `past_key_values`.
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x, scale=1.0):
        # The constant factor is folded into the (small) weight, as gda does.
        w = self.weight if scale == 1.0 else self.weight * scale
        return F.rms_norm(x.float(), (w.shape[0],), w.float(), self.eps).to(x.dtype)


def rope_tables(positions, dim, theta):
    """cos and sin, each (B, T, 1, dim/2) in fp32, for integer positions (B, T)."""
    half = dim // 2
    inv_freq = torch.exp(
        torch.arange(half, dtype=torch.float32, device=positions.device) * (-2.0 * math.log(theta) / dim)
    )
    angles = positions.to(torch.float32)[..., None] * inv_freq
    return angles.cos()[:, :, None, :], angles.sin()[:, :, None, :]


def apply_rope(x, cos, sin):
    """Rotates x (B, T, H, d) by position (rotate-half layout)."""
    half = x.shape[-1] // 2
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attend(q, k, v, mask):
    """softmax(q kᵀ/√d) v, causal. q (B, Hq, T, d); k (B, Hk, S, d) and v
    (B, Hk, S, dv) with Hk dividing Hq (GQA: query head i reads K/V head
    i // (Hq / Hk)). `mask` is None (plain causal, no cache) or a boolean
    (B, 1, T, S) of the keys each query may read."""
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    d, dv = q.shape[-1], v.shape[-1]
    scale = 1.0 / math.sqrt(d)
    if dv > d:
        # Zero-padded queries and keys add nothing to any score (gda does the
        # same so that fused kernels see equal widths); the scale stays 1/√d.
        q = F.pad(q, (0, dv - d))
        k = F.pad(k, (0, dv - d))
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


class StandardAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        c, d = config.d_model, config.head_dim
        self.heads, self.kv_heads, self.head_dim = config.heads, config.kv_heads, d
        self.q = nn.Linear(c, config.heads * d, bias=False)
        self.k = nn.Linear(c, config.kv_heads * d, bias=False)
        self.v = nn.Linear(c, config.kv_heads * d, bias=False)
        self.o = nn.Linear(config.heads * d, c, bias=False)

    def forward(self, x, cos, sin, mask, cache, layer_idx):
        b, t, _ = x.shape
        d = self.head_dim
        q = apply_rope(self.q(x).view(b, t, self.heads, d), cos, sin).transpose(1, 2)
        k = apply_rope(self.k(x).view(b, t, self.kv_heads, d), cos, sin).transpose(1, 2)
        v = self.v(x).view(b, t, self.kv_heads, d).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, layer_idx)
        out = attend(q, k, v, mask)
        return self.o(out.transpose(1, 2).reshape(b, t, self.heads * d))


class GdaAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        c, d = config.d_model, config.head_dim
        self.hs, self.hn = config.signal_heads, config.noise_heads
        self.kv, self.k2n, self.head_dim = config.kv_heads, config.noise_kv_heads, d
        self.q1 = nn.Linear(c, self.hs * d, bias=False)
        self.q2 = nn.Linear(c, self.hn * d, bias=False)
        self.k1 = nn.Linear(c, self.kv * d, bias=False)
        self.k2 = nn.Linear(c, self.k2n * d, bias=False)
        self.v = nn.Linear(c, self.kv * 2 * d, bias=False)
        self.o = nn.Linear(self.hs * 2 * d, c, bias=False)
        self.lambda_q1 = nn.Parameter(torch.zeros(d))
        self.lambda_k1 = nn.Parameter(torch.zeros(d))
        self.lambda_q2 = nn.Parameter(torch.zeros(d))
        self.lambda_k2 = nn.Parameter(torch.zeros(d))
        self.subln = RMSNorm(2 * d, 1e-5)
        self.lambda_init = float(config.lambda_init[layer_idx])
        self.one = config.noise_scope == "one"

    def lam(self):
        """λ = exp(λq1·λk1) − exp(λq2·λk2) + λ_init, a 0-dim fp32 tensor."""
        return (
            torch.exp((self.lambda_q1.float() * self.lambda_k1.float()).sum())
            - torch.exp((self.lambda_q2.float() * self.lambda_k2.float()).sum())
            + self.lambda_init
        )

    def forward(self, x, cos, sin, mask, cache, layer_idx):
        b, t, _ = x.shape
        d, hs, hn, kv, k2n = self.head_dim, self.hs, self.hn, self.kv, self.k2n
        g = hs // hn
        q1 = apply_rope(self.q1(x).view(b, t, hs, d), cos, sin).transpose(1, 2)
        q2 = apply_rope(self.q2(x).view(b, t, hn, d), cos, sin).transpose(1, 2)
        k1 = apply_rope(self.k1(x).view(b, t, kv, d), cos, sin).transpose(1, 2)
        k2 = apply_rope(self.k2(x).view(b, t, k2n, d), cos, sin).transpose(1, 2)
        v = self.v(x).view(b, t, kv, 2 * d).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(torch.cat([k1, k2], dim=1), v, layer_idx)
            k1, k2 = k[:, :kv], k[:, kv:]
        signal = attend(q1, k1, v, mask).view(b, hn, g, t, 2 * d)
        if k2n == kv:
            noise = attend(q2, k2, v, mask)
        else:
            # K2 and V differ in head count (no-share ablation): both are
            # expanded to one head per noise head.
            noise = attend(q2, k2.repeat_interleave(hn // k2n, dim=1), v.repeat_interleave(hn // kv, dim=1), mask)
        lam = self.lam().to(x.dtype)
        noise = noise.view(b, hn, 1, t, 2 * d)
        if self.one:
            scope = torch.zeros(g, dtype=x.dtype, device=x.device)
            scope[0] = 1
            out = signal - (noise * lam) * scope.view(1, 1, g, 1, 1)
        else:
            out = signal.addcmul(noise, -lam)
        out = self.subln(out.view(b, hs, t, 2 * d), 1.0 - self.lambda_init)
        return self.o(out.transpose(1, 2).reshape(b, t, hs * 2 * d))


class Mlp(nn.Module):
    def __init__(self, config):
        super().__init__()
        c, f = config.d_model, config.mlp_hidden
        self.gate = nn.Linear(c, f, bias=False)
        self.up = nn.Linear(c, f, bias=False)
        self.down = nn.Linear(f, c, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        if config.attention == "gda":
            self.attn = GdaAttention(config, layer_idx)
        else:
            self.attn = StandardAttention(config)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = Mlp(config)

    def forward(self, x, cos, sin, mask, cache, layer_idx):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache, layer_idx)
        return x + self.mlp(self.mlp_norm(x))


class GdaPreTrainedModel(PreTrainedModel):
    config_class = GdaConfig
    base_model_prefix = "gda"
    _no_split_modules = ["Block"]
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        # gda's init (src/model): normal(0, init_std) matrices, output
        # projections scaled by 1/√(2·n_layers), λ vectors normal(0, 0.1).
        std = self.config.init_std
        if isinstance(module, (nn.Linear, nn.Embedding)):
            _init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            _init.ones_(module.weight)
        if isinstance(module, (GdaAttention, StandardAttention)):
            _init.normal_(module.o.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layers))
        if isinstance(module, Mlp):
            _init.normal_(module.down.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layers))
        if isinstance(module, GdaAttention):
            for p in (module.lambda_q1, module.lambda_k1, module.lambda_q2, module.lambda_k2):
                _init.normal_(p, mean=0.0, std=0.1)


class GdaForCausalLM(GdaPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList([Block(config, l) for l in range(config.n_layers)])
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        # Tied: the head is tok_emb itself (computed in forward), so nothing
        # is tied by transformers and model.safetensors has no lm_head.
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.tok_emb

    def set_input_embeddings(self, value):
        self.tok_emb = value

    def get_output_embeddings(self):
        return self.lm_head

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        labels=None,
        use_cache=None,
        return_dict=None,
        logits_to_keep=0,
        **kwargs,
    ):
        cache = kwargs.pop("cache", None)
        if cache is None:
            cache = past_key_values
        if use_cache is None:
            use_cache = getattr(self.config, "use_cache", False)
        if use_cache and cache is None and DynamicCache is not None:
            cache = DynamicCache()
        if not use_cache:
            cache = None
        x = self.tok_emb(input_ids) if inputs_embeds is None else inputs_embeds
        b, t = x.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError("attention_mask must be (batch, past + new tokens) of 0/1")
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        if position_ids is None:
            if attention_mask is None:
                position_ids = torch.arange(past, past + t, device=x.device).expand(b, t)
            else:
                # Positions count unmasked tokens only (left padding shifts nothing).
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -t:]
        mask = None
        if attention_mask is not None or past > 0:
            s = past + t
            q_pos = torch.arange(past, s, device=x.device)[:, None]
            k_pos = torch.arange(s, device=x.device)[None, :]
            mask = (k_pos <= q_pos)[None, None].expand(b, 1, t, s)
            if attention_mask is not None:
                keep = attention_mask[:, None, None, :s].bool()
                # A padded query reads at least itself: no row is all masked (no NaN).
                mask = (mask & keep) | (k_pos == q_pos)[None, None]
        cos, sin = rope_tables(position_ids, self.config.head_dim, self.config.rope_theta)
        for l, block in enumerate(self.blocks):
            x = block(x, cos, sin, mask, cache, l)
        x = self.norm(x)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        head = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, head.to(x.dtype)).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        out = CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: cache})
        if return_dict is False:
            return out.to_tuple()
        return out
