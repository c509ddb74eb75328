#!/usr/bin/env python3
"""An independent numpy forward pass of llama-, qwen2-, qwen3-, phi3- and gemma3-architecture GGUF models: the definition
of "correct logits" that tests/reference/test_e2e_logits.py holds slm to.

It shares no code with slm: weights are read with the `gguf` package (GGUFReader) and dequantized with
gguf.quants.dequantize, then the transformer is written out plainly:

  x = token_embd[ids]
  per layer:  h = rmsnorm(x) * attn_norm
              q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)          (biases: qwen2)
                                 (phi3: Wq|Wk|Wv stored as the rows of one attn_qkv, Wgate|Wup as those
                                 of ffn_up, in that order; some files keep them apart)
              q, k per head = rmsnorm(head) * attn_q_norm, attn_k_norm     (qwen3: over head_dim, the
                                 same epsilon, one weight [head_dim] for all heads, before rope)
              rope(q), rope(k)   llama: pairs (2i, 2i+1)  ("normal"; the GGUF converter permutes Wq/Wk
                                 for it), qwen2, qwen3 and phi3: pairs (i, i + n_rot/2)  ("NeoX"); phi3
                                 "longrope" files divide the frequencies by rope_factors_short (context
                                 <= the original one) or rope_factors_long, and multiply cos and sin by
                                 sqrt(1 + ln(s) / ln(original)), s = trained / original context
              k, v rounded to float16 (slm keeps its KV cache in f16; so does this reference), or with
                                 kv_quant {"k": "q8_0", "v": "q4_0"} quantized to those GGUF blocks and back
                                 (gguf.quants: -ctk / -ctv)
              x += softmax(q k^T / sqrt(head_dim) + causal mask) v  Wo      (grouped-query heads)
              h = rmsnorm(x) * ffn_norm
              x += (silu(h Wgate) * (h Wup)) Wdown
  logits = (rmsnorm(x) * output_norm) Wout     (Wout = output.weight, or token_embd.weight when tied)

gemma3 (Gemma 3, from Google's published definition: the Gemma 3 technical report and the Gemma3 model of
Hugging Face transformers, config keys named as there):
  x = token_embd[ids] * sqrt(n_embd)
  per layer:  h = rmsnorm(x) * attn_norm
              q, k, v = h Wq, h Wk, h Wv;  q, k per head = rmsnorm(head) * attn_q_norm, attn_k_norm
              rope(q), rope(k) NeoX pairs; local layers with base rope_local_base_freq = 10000 and no
                                 scaling, global ones with rope.freq_base (and its scaling)
              a = softmax(q k^T * query_pre_attn_scalar^-1/2 + mask) v Wo     (query_pre_attn_scalar =
                                 key_length in the files: 256 for 270M..12B; 27B differs, see README)
                                 mask: causal; local layers also hide keys at or before pos - sliding_window
                                 (a query sees its last sliding_window positions, itself included);
                                 layer i is global when (i + 1) % sliding_window_pattern == 0 (pattern 6)
              x += rmsnorm(a) * post_attention_norm
              h = rmsnorm(x) * ffn_norm                     (pre_feedforward_layernorm)
              x += rmsnorm((gelu_tanh(h Wgate) * (h Wup)) Wdown) * post_ffw_norm
  logits = (rmsnorm(x) * output_norm) token_embd^T  (tied)
  Gemma's RMSNorm multiplies by (1 + w) for the checkpoint's w; GGUF files hold 1 + w (the converter adds
  it: output_norm.weight of the 270M file has min 0.19, mean 26), so the stored weight is the multiplier.

Everything else is float32 (norms and softmax in float64). Use as a module (ReferenceModel) or:

  python reference_forward.py MODEL --tokens 1,2,3 [-n 8]      prints the argmax per position and a
                                                               greedy continuation
"""
import argparse
import sys
import time

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize


def _kv_round(x, kind):
    """x [T, n_head_kv, head_dim] through a KV cache row of type kind (None: unchanged): each position's
    row cut into blocks of 32, quantized and dequantized as slm's KV cache stores and reads it. The codes are
    those of slm's reference quantizer (kernels/ref/quant_ref.c), which differs from gguf's in two details
    that a 4-bit cache of a small model feels: the codes are rounded against the scale as stored (f16), and
    halves round away from zero. The stored blocks are checked against gguf's format (test_quant_numpy)."""
    if not kind:
        return x
    b = np.ascontiguousarray(x.reshape(-1, 32), dtype=np.float32)
    if kind == "q8_0":
        d = (np.abs(b).max(1, keepdims=True) / np.float32(127)).astype(np.float16).astype(np.float32)
        lo, hi, off = -127, 127, 0
    else:  # q4_0: the element of largest magnitude maps onto -8
        vmax = np.take_along_axis(b, np.abs(b).argmax(1)[:, None], 1)
        d = (vmax / np.float32(-8)).astype(np.float16).astype(np.float32)
        lo, hi, off = 0, 15, 8
    with np.errstate(divide="ignore", invalid="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = (b * idv).astype(np.float32)
    q = np.clip(np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) + off, lo, hi)
    return ((q - off) * d).astype(np.float32).reshape(x.shape)

SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3", "phi3", "gemma3")
# Gemma 3's published configuration: every 6th layer global, local layers rotating with base 10000. GGUF files
# carry neither; keys of the same meaning are read where a file has them.
GEMMA3_SLIDING_WINDOW_PATTERN = 6
GEMMA3_ROPE_LOCAL_BASE = 10000.0


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def _flush_subnormals(a):
    """a with its float32 subnormals replaced by 0 (see ReferenceModel._mm)."""
    tiny = np.abs(a) < np.finfo(np.float32).tiny
    return np.where(tiny, np.float32(0), a).astype(np.float32, copy=False) if tiny.any() else a


class ReferenceModel:
    """Weights of one GGUF model, dequantized to float32 once, and a forward pass with a KV cache."""

    def __init__(self, path, act_q8=False, n_ctx=None):
        """act_q8: model what slm's CPU mat-muls do by default - round each activation block to 8 bits
        (one f32 scale per 32 values for the 32-element block formats, per 256 for the K-quants) before
        multiplying it with a quantized weight. Off: activations stay f32.
        n_ctx: the context the model runs with (it picks phi3's long or short rope factors); default the
        trained context up to 4096, as slm chooses.
        sum_jitter (attribute, default 0): when > 0, every mat-mul result is multiplied by
        1 + sum_jitter * N(0, 1) drawn from jitter_rng, standing in for another, equally valid summation
        order (2**-23 is about one float32 rounding step), so that the spread of equally valid 8-bit
        runs can be measured."""
        self.path = path
        self.act_q8 = act_q8
        self.sum_jitter = 0.0
        self.jitter_rng = np.random.default_rng(0)
        r = GGUFReader(path)
        arch = _field(r, "general.architecture")
        if arch not in SUPPORTED_ARCHS:
            raise ValueError(f"{path}: architecture {arch!r} is not one of {SUPPORTED_ARCHS}")
        self.arch = arch
        a = arch + "."
        self.n_layer = int(_field(r, a + "block_count"))
        self.n_embd = int(_field(r, a + "embedding_length"))
        self.n_head = int(_field(r, a + "attention.head_count"))
        self.n_head_kv = int(_field(r, a + "attention.head_count_kv", self.n_head))
        self.head_dim = int(_field(r, a + "attention.key_length", self.n_embd // self.n_head))
        self.n_rot = int(_field(r, a + "rope.dimension_count", self.head_dim))
        self.eps = float(_field(r, a + "attention.layer_norm_rms_epsilon", 1e-5))
        self.freq_base = float(_field(r, a + "rope.freq_base", 10000.0))
        self.neox = arch in ("qwen2", "qwen3", "phi3", "gemma3")
        self.gemma = arch == "gemma3"
        self.embd_scale = np.float32(np.sqrt(self.n_embd)) if self.gemma else np.float32(1)
        self.sliding_window = int(_field(r, a + "attention.sliding_window", 0) or 0) if self.gemma else 0
        self.swa_pattern = int(_field(r, a + "attention.sliding_window_pattern", GEMMA3_SLIDING_WINDOW_PATTERN))
        self.local_base = float(_field(r, a + "rope.local.freq_base", GEMMA3_ROPE_LOCAL_BASE))
        # scores are q.k * query_pre_attn_scalar^-1/2; the files state key_length, which it equals (270M-12B)
        self.attn_scalar = float(_field(r, a + "attention.query_pre_attn_scalar", self.head_dim) or self.head_dim)
        self.n_ctx_train = int(_field(r, a + "context_length", 2048))
        self.n_ctx_orig = int(_field(r, a + "rope.scaling.original_context_length", 0))
        self.kv_f16 = True  # round K and V to float16 as slm's KV cache does
        self.kv_quant = {}  # "k"/"v" -> "q8_0" or "q4_0": that cache quantized instead (slm's -ctk / -ctv)
        self.tokens = _field(r, "tokenizer.ggml.tokens", [])
        self.bos_id = _field(r, "tokenizer.ggml.bos_token_id")
        self.tokenizer_model = tok_model = _field(r, "tokenizer.ggml.model", "llama")
        # llama.cpp's convention: SPM vocabularies add BOS unless told otherwise, BPE ones only when told.
        self.add_bos = self.bos_id is not None and bool(
            _field(r, "tokenizer.ggml.add_bos_token", tok_model == "llama"))
        self.token_types = _field(r, "tokenizer.ggml.token_type", [])  # 1 = normal, 3 = control, ...

        tensors = {t.name: t for t in r.tensors}
        self.tensor_types = {t.name: GGMLQuantizationType(t.tensor_type).name for t in r.tensors}

        def act_block(name):
            """Activation block length slm quantizes to 8 bits for this weight (0: f32 activations)."""
            kind = self.tensor_types.get(name, "F32")
            return 256 if kind in ("Q4_K", "Q5_K", "Q6_K") else 32 if kind in (
                "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0") else 0

        def get(name, required=True):
            t = tensors.get(name)
            if t is None:
                if required:
                    raise KeyError(f"{path}: tensor {name} missing")
                return None
            w = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
            # GGUF shape [ne0, ne1] (ne0 fastest) reads in numpy as [ne1, ne0]: a weight for y = W x is
            # [n_out, n_in]; store it transposed so that rows of activations multiply it directly.
            return np.ascontiguousarray(w.reshape([int(d) for d in reversed(t.shape)]))

        self.tok_embd = get("token_embd.weight")  # [n_vocab, n_embd]
        self.n_vocab = self.tok_embd.shape[0]
        out = get("output.weight", required=False)
        self.w_out = np.ascontiguousarray((out if out is not None else self.tok_embd).T)  # [n_embd, n_vocab]
        self.out_block = act_block("output.weight" if out is not None else "token_embd.weight")
        self.output_norm = get("output_norm.weight")
        ff = get("rope_freqs.weight", required=False)
        self.rope_factors = ff.astype(np.float64) if ff is not None else np.ones(self.n_rot // 2)
        short, long_ = get("rope_factors_short.weight", False), get("rope_factors_long.weight", False)
        self.longrope = None if short is None else (short.astype(np.float64), long_.astype(np.float64))
        self.rope_mag = 1.0
        self.set_context(n_ctx or min(self.n_ctx_train if self.n_ctx_train >= 1 else 4096, 4096))

        self.layers = []
        for i in range(self.n_layer):
            p = f"blk.{i}."
            names = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output", "wg": "ffn_gate",
                     "wu": "ffn_up", "wd": "ffn_down"}
            L = {"attn_norm": get(p + "attn_norm.weight"), "ffn_norm": get(p + "ffn_norm.weight"),
                 "wo": get(p + "attn_output.weight").T.copy(),  # [n_head*head_dim, n_embd]
                 "wd": get(p + "ffn_down.weight").T.copy()}  # [n_ff, n_embd]
            nq, nkv = self.n_head * self.head_dim, self.n_head_kv * self.head_dim
            if arch == "phi3" and p + "attn_qkv.weight" in tensors:
                qkv = get(p + "attn_qkv.weight")  # [nq + 2 nkv, n_embd]: rows of q, k, v
                if qkv.shape[0] != nq + 2 * nkv:
                    raise ValueError(f"{path}: {p}attn_qkv.weight has {qkv.shape[0]} rows, not {nq + 2 * nkv}")
                L["wq"], L["wk"], L["wv"] = (qkv[:nq].T.copy(), qkv[nq:nq + nkv].T.copy(),
                                             qkv[nq + nkv:].T.copy())
                names.update(wq="attn_qkv", wk="attn_qkv", wv="attn_qkv")
            else:
                L["wq"] = get(p + "attn_q.weight").T.copy()  # [n_embd, n_head*head_dim]
                L["wk"] = get(p + "attn_k.weight").T.copy()  # [n_embd, n_head_kv*head_dim]
                L["wv"] = get(p + "attn_v.weight").T.copy()
            if arch == "phi3" and p + "ffn_gate.weight" not in tensors:
                gu = get(p + "ffn_up.weight")  # [2 n_ff, n_embd]: rows of gate, then up
                n_ff = gu.shape[0] // 2
                L["wg"], L["wu"] = gu[:n_ff].T.copy(), gu[n_ff:].T.copy()
                names.update(wg="ffn_up")
            else:
                L["wg"] = get(p + "ffn_gate.weight").T.copy()  # [n_embd, n_ff]
                L["wu"] = get(p + "ffn_up.weight").T.copy()
            for b in ("q", "k", "v"):
                L["b" + b] = get(p + f"attn_{b}.bias", required=False)
            for b in ("q", "k"):  # qwen3's and gemma3's per-head norms, [head_dim]
                L[b + "_norm"] = get(p + f"attn_{b}_norm.weight", required=arch in ("qwen3", "gemma3"))
            for n in ("post_attention_norm", "post_ffw_norm"):  # gemma3
                L[n] = get(p + n + ".weight") if self.gemma else None
            L["local"] = self.gemma and self.sliding_window > 0 and (i + 1) % self.swa_pattern != 0
            L["block"] = {k: act_block(p + n + ".weight") for k, n in names.items()}
            self.layers.append(L)

    def set_context(self, n_ctx):
        """Runs the model with context n_ctx from now on: for longrope files, the short factors up to the
        original context and the long ones beyond it, and the magnitude factor of cos and sin."""
        self.n_ctx = n_ctx
        if self.longrope is None:
            return
        if self.n_ctx_orig < 1:
            raise ValueError(f"{self.path}: rope factors without rope.scaling.original_context_length")
        self.rope_factors = self.longrope[1] if n_ctx > self.n_ctx_orig else self.longrope[0]
        s = self.n_ctx_train / self.n_ctx_orig
        self.rope_mag = float(np.sqrt(1 + np.log(s) / np.log(self.n_ctx_orig))) if s > 1 else 1.0

    # --- pieces -------------------------------------------------------------------------------------

    def _mm(self, h, w, block):
        """h @ w, with h's rows first rounded to 8-bit blocks when act_q8 and the result perturbed when
        sum_jitter (see __init__). Subnormal inputs (|h| < 2^-126, as GELU gives far below 0) are flushed to 0
        first: they change no sum by a rounding step, and BLAS kernels run many times slower on them."""
        h = _flush_subnormals(h)
        if self.act_q8 and block and h.shape[-1] % block == 0:
            x = h.reshape(-1, block).astype(np.float32)
            d = (np.abs(x).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
            inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, 1), 0).astype(np.float32)
            q = np.clip(np.trunc(x * inv + np.copysign(np.float32(0.5), x)), -127, 127)  # half away from 0
            h = (q * d).reshape(h.shape).astype(np.float32)
        y = h @ w
        if self.sum_jitter > 0:
            y = (y * (1 + self.sum_jitter * self.jitter_rng.standard_normal(y.shape))).astype(np.float32)
        return y

    def _rmsnorm(self, x, w):
        x64 = x.astype(np.float64)
        scale = 1.0 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + self.eps)
        return (x64 * scale).astype(np.float32) * w

    def _rope(self, x, pos, local=False):
        """x: [T, n_heads, head_dim]; rotates the first n_rot dims of every head at positions pos [T]
        (gemma3's local layers: base local_base, no frequency factors)."""
        half = self.n_rot // 2
        if local:
            inv = self.local_base ** (-np.arange(half, dtype=np.float64) * 2.0 / self.n_rot)
        else:
            inv = self.freq_base ** (-np.arange(half, dtype=np.float64) * 2.0 / self.n_rot) / self.rope_factors
        ang = pos[:, None].astype(np.float64) * inv[None, :]  # [T, half]
        cos = np.cos(ang)[:, None, :] * self.rope_mag
        sin = np.sin(ang)[:, None, :] * self.rope_mag
        y = x.astype(np.float64)
        if self.neox:
            a, b = y[..., :half], y[..., half:self.n_rot]
        else:
            a, b = y[..., 0:self.n_rot:2], y[..., 1:self.n_rot:2]
        ra = a * cos - b * sin
        rb = a * sin + b * cos
        out = y.copy()
        if self.neox:
            out[..., :half], out[..., half:self.n_rot] = ra, rb
        else:
            out[..., 0:self.n_rot:2], out[..., 1:self.n_rot:2] = ra, rb
        return out.astype(np.float32)

    def new_cache(self):
        return {"pos": 0, "k": [None] * self.n_layer, "v": [None] * self.n_layer}

    # --- forward ------------------------------------------------------------------------------------

    def forward(self, ids, cache=None):
        """Logits [len(ids), n_vocab] (float32) for ids following what `cache` already holds."""
        if cache is None:
            cache = self.new_cache()
        ids = np.asarray(ids, dtype=np.int64)
        if ids.min() < 0 or ids.max() >= self.n_vocab:
            raise ValueError(f"token id out of range [0, {self.n_vocab})")
        T, p0 = len(ids), cache["pos"]
        pos = np.arange(p0, p0 + T)
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        group = nh // nkv
        x = self.tok_embd[ids].astype(np.float32) * self.embd_scale  # [T, n_embd]
        # Causal mask over all cached + new positions: query t (absolute p0+t) sees keys 0..p0+t; in a local
        # (sliding-window) layer only keys p0+t-window+1..p0+t.
        n_keys = p0 + T
        keys = np.arange(n_keys)[None, :]
        mask = np.where(keys <= pos[:, None], 0.0, -np.inf)  # [T, n_keys]
        local_mask = np.where((keys <= pos[:, None]) & (keys > pos[:, None] - self.sliding_window), 0.0, -np.inf)
        for li, L in enumerate(self.layers):
            h = self._rmsnorm(x, L["attn_norm"])
            B = L["block"]
            q, k, v = self._mm(h, L["wq"], B["wq"]), self._mm(h, L["wk"], B["wk"]), self._mm(h, L["wv"], B["wv"])
            if L["bq"] is not None:
                q = q + L["bq"]
            if L["bk"] is not None:
                k = k + L["bk"]
            if L["bv"] is not None:
                v = v + L["bv"]
            q, k = q.reshape(T, nh, hd), k.reshape(T, nkv, hd)
            if L["q_norm"] is not None:
                q = self._rmsnorm(q, L["q_norm"])
            if L["k_norm"] is not None:
                k = self._rmsnorm(k, L["k_norm"])
            q = self._rope(q, pos, L["local"])
            k = self._rope(k, pos, L["local"])
            v = v.reshape(T, nkv, hd)
            # f16 rows, or quantized ones straight from f32 (as slm's -ctk / -ctv write them)
            kq, vq = self.kv_quant.get("k"), self.kv_quant.get("v")
            k = _kv_round(k, kq) if kq else k.astype(np.float16).astype(np.float32) if self.kv_f16 else k
            v = _kv_round(v, vq) if vq else v.astype(np.float16).astype(np.float32) if self.kv_f16 else v
            if cache["k"][li] is not None:
                k = np.concatenate([cache["k"][li], k], axis=0)
                v = np.concatenate([cache["v"][li], v], axis=0)
            cache["k"][li], cache["v"][li] = k, v
            # [n_head_kv, group, T, hd] x [n_head_kv, hd, n_keys] -> [n_head_kv, group, T, n_keys]
            qg = q.transpose(1, 0, 2).reshape(nkv, group, T, hd)
            kt = k.transpose(1, 2, 0)[:, None, :, :]
            s = (qg @ kt).astype(np.float64) / np.sqrt(self.attn_scalar) + (local_mask if L["local"] else mask)
            s -= s.max(axis=-1, keepdims=True)
            pr = np.exp(s)
            pr /= pr.sum(axis=-1, keepdims=True)
            vv = v.transpose(1, 0, 2)[:, None, :, :]  # [n_head_kv, 1, n_keys, hd]
            o = (_flush_subnormals(pr.astype(np.float32)) @ vv).reshape(nh, T, hd).transpose(1, 0, 2).reshape(T, nh * hd)
            a = self._mm(o, L["wo"], B["wo"])
            if L["post_attention_norm"] is not None:
                a = self._rmsnorm(a, L["post_attention_norm"])
            x = x + a
            h = self._rmsnorm(x, L["ffn_norm"])
            g = self._mm(h, L["wg"], B["wg"])
            u = self._mm(h, L["wu"], B["wu"])
            if self.gemma:  # GELU, tanh approximation (gelu_pytorch_tanh)
                g64 = g.astype(np.float64)
                act = (0.5 * g64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (g64 + 0.044715 * g64 ** 3)))).astype(
                    np.float32) * u
            else:
                act = (g / (1.0 + np.exp(-g.astype(np.float64)))).astype(np.float32) * u
            f = self._mm(act, L["wd"], B["wd"])
            if L["post_ffw_norm"] is not None:
                f = self._rmsnorm(f, L["post_ffw_norm"])
            x = x + f
        cache["pos"] = p0 + T
        return self._mm(self._rmsnorm(x, self.output_norm), self.w_out, self.out_block)

    def greedy(self, ids, n):
        """(prompt logits [T, n_vocab], n greedy ids, logits [n, n_vocab] each greedy id was chosen from)."""
        cache = self.new_cache()
        prompt_logits = self.forward(ids, cache)
        last = prompt_logits[-1]
        out, step_logits = [], []
        for i in range(n):
            t = int(np.argmax(last))
            out.append(t)
            step_logits.append(last)
            if i + 1 < n:
                last = self.forward([t], cache)[-1]
        return prompt_logits, out, np.array(step_logits)

    def token_str(self, t):
        return self.tokens[t] if 0 <= t < len(self.tokens) else f"<{t}>"


def write_qwen2_variant(src, dst, bias_scale, seed=0):
    """Writes a qwen2-architecture GGUF made from a llama one, for testing the qwen2 path on real weights
    when no small Qwen2 GGUF is to be had.

    The two differ in RoPE pairing and in the Q/K/V biases. A llama GGUF stores the rows of each head
    of Wq/Wk interleaved ([r0, r(d/2), r1, r(d/2+1), ...] of the original order) so that rotating
    adjacent pairs equals rotating halves of the original; qwen2 rotates halves. Undoing that
    interleave per head (a permutation of whole rows, so quantized blocks move untouched) gives weights
    for which the NeoX rotation reproduces the llama model exactly. Biases drawn from
    N(0, bias_scale^2) (F32; zero when bias_scale is 0) are then added for Q, K and V.
    """
    r, w, n_head, n_head_kv, _ = _variant_of_llama(src, dst, "qwen2")
    rng = np.random.default_rng(seed)
    for t in r.tensors:
        w.add_tensor(t.name, _neox_tensor(t, n_head, n_head_kv), raw_dtype=GGMLQuantizationType(t.tensor_type))
        for b in ("q", "k", "v"):
            if t.name.endswith(f"attn_{b}.weight"):
                n_out = int(t.shape[1])
                bias = (rng.standard_normal(n_out) * bias_scale).astype(np.float32)
                w.add_tensor(t.name[:-len("weight")] + "bias", bias)
    _write_and_close(w)


def _copy_fields(r, w, src_arch, dst_arch, skip=()):
    """Every metadata key of reader r into writer w, {src_arch}.* renamed {dst_arch}.*, but those in skip."""
    from gguf import GGUFValueType

    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in skip:
            continue
        name = dst_arch + "." + key[len(src_arch) + 1:] if key.startswith(src_arch + ".") else key
        vtype = f.types[0]
        if vtype == GGUFValueType.ARRAY:
            w.add_key_value(name, f.contents(), vtype, sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), vtype)


def _neox_rows(data, heads):
    """Undoes the GGUF llama converter's per-head interleave of Wq/Wk rows (see write_qwen2_variant)."""
    rows = data.shape[0]
    hd = rows // heads
    return data.reshape(heads, hd // 2, 2, -1).swapaxes(1, 2).reshape(rows, -1)


def _neox_tensor(t, n_head, n_head_kv):
    """A tensor's data for a NeoX-RoPE architecture: Wq and Wk rows de-interleaved, anything else as is."""
    data = np.asarray(t.data)
    heads = n_head if t.name.endswith("attn_q.weight") else n_head_kv if t.name.endswith("attn_k.weight") else 0
    return np.ascontiguousarray(_neox_rows(data, heads) if heads else data)


def _variant_of_llama(src, dst, arch):
    """Opens the llama GGUF src and a writer for dst as architecture arch with every metadata key copied;
    returns (reader, writer, n_head, n_head_kv, n_embd)."""
    from gguf import GGUFWriter

    r = GGUFReader(src)
    if _field(r, "general.architecture") != "llama":
        raise ValueError(f"{src}: not a llama GGUF")
    n_head = int(_field(r, "llama.attention.head_count"))
    n_head_kv = int(_field(r, "llama.attention.head_count_kv", n_head))
    n_embd = int(_field(r, "llama.embedding_length"))
    w = GGUFWriter(dst, arch)
    _copy_fields(r, w, "llama", arch)
    return r, w, n_head, n_head_kv, n_embd


def _write_and_close(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_qwen3_variant(src, dst, norm_spread, seed=0):
    """Writes a qwen3-architecture GGUF made from a llama one, for testing the qwen3 path on real weights
    (no small Qwen 3 GGUF ships on PyPI).

    Wq/Wk rows are reordered for NeoX RoPE as in write_qwen2_variant; there are no biases. Each layer gets
    attn_q_norm and attn_k_norm weights [head_dim] drawn uniformly from 1 +- norm_spread (F32), so a
    per-head norm that is skipped, applied after RoPE, over the wrong span or with the other weight
    changes the logits. attention.key_length / value_length are written, as Qwen 3 files have them (their
    head size is not n_embd / n_head). The norms change the function: it is checked against the
    reference, not against the llama original.
    """
    from gguf import GGUFValueType

    r, w, n_head, n_head_kv, n_embd = _variant_of_llama(src, dst, "qwen3")
    head_dim = int(_field(r, "llama.attention.key_length", n_embd // n_head))
    for k in ("key_length", "value_length"):
        if _field(r, "llama.attention." + k) is None:
            w.add_key_value("qwen3.attention." + k, head_dim, GGUFValueType.UINT32)
    rng = np.random.default_rng(seed)
    for t in r.tensors:
        w.add_tensor(t.name, _neox_tensor(t, n_head, n_head_kv), raw_dtype=GGMLQuantizationType(t.tensor_type))
        for b in ("q", "k"):
            if t.name.endswith(f"attn_{b}.weight"):
                norm = rng.uniform(1 - norm_spread, 1 + norm_spread, head_dim).astype(np.float32)
                w.add_tensor(t.name[:-len(f"attn_{b}.weight")] + f"attn_{b}_norm.weight", norm)
    _write_and_close(w)


def write_gemma3_window_variant(src, dst, window):
    """Writes a copy of the gemma3 GGUF src whose attention.sliding_window is `window`: the same weights, with
    the local layers' window short enough that a short prompt reaches past it (Gemma 3's own 512 would take a
    prompt of hundreds of tokens, and the reference's logits over the whole vocabulary for each)."""
    from gguf import GGUFValueType, GGUFWriter

    r = GGUFReader(src)
    if _field(r, "general.architecture") != "gemma3":
        raise ValueError(f"{src}: not a gemma3 GGUF")
    w = GGUFWriter(dst, "gemma3")
    _copy_fields(r, w, "gemma3", "gemma3", skip=("gemma3.attention.sliding_window",))
    w.add_key_value("gemma3.attention.sliding_window", window, GGUFValueType.UINT32)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=GGMLQuantizationType(t.tensor_type))
    _write_and_close(w)


def write_phi3_variant(src, dst, longrope_orig_ctx=0, seed=0):
    """Writes a phi3-architecture GGUF made from a llama one, with the layout the common converters give
    real Phi-3/Phi-4 files, for testing the phi3 path on real weights (no small phi3 GGUF ships on PyPI).

    Wq/Wk rows are reordered for NeoX RoPE as in write_qwen2_variant, then each layer's q, k and v rows
    are stacked into one attn_qkv [n_embd, q + 2 kv] and its gate and up rows into one ffn_up
    [n_embd, 2 n_ff]: whole rows of quantized blocks move untouched, so the model computes the same
    function as the llama original (up to summation order). longrope_orig_ctx > 0 instead makes a
    long-context ("longrope") model: rope.scaling.original_context_length = longrope_orig_ctx and random
    rope_factors_short / rope_factors_long divisors (1..1.5 and 1..8, growing roughly with the wavelength).
    """
    from gguf import GGUFValueType

    r, w, n_head, n_head_kv, n_embd = _variant_of_llama(src, dst, "phi3")
    n_rot = int(_field(r, "llama.rope.dimension_count", n_embd // n_head))
    tensors = {t.name: t for t in r.tensors}
    if longrope_orig_ctx:
        w.add_key_value("phi3.rope.scaling.original_context_length", longrope_orig_ctx, GGUFValueType.UINT32)
        rng = np.random.default_rng(seed)
        ramp = np.linspace(0, 1, n_rot // 2)
        w.add_tensor("rope_factors_short.weight",
                     (1 + 0.5 * ramp * rng.uniform(0.5, 1, n_rot // 2)).astype(np.float32))
        w.add_tensor("rope_factors_long.weight", (1 + 7 * ramp * rng.uniform(0.5, 1, n_rot // 2)).astype(np.float32))

    def raw(name, heads=0):
        t = tensors[name]
        data = np.asarray(t.data)
        return (_neox_rows(data, heads) if heads else data), GGMLQuantizationType(t.tensor_type)

    for t in r.tensors:
        n = t.name
        if n.endswith(("attn_k.weight", "attn_v.weight", "ffn_gate.weight")):
            continue  # written fused with their partners
        if n.endswith("attn_q.weight"):
            p = n[:-len("attn_q.weight")]
            parts = [raw(p + "attn_q.weight", n_head), raw(p + "attn_k.weight", n_head_kv), raw(p + "attn_v.weight")]
            n, fused = p + "attn_qkv.weight", parts
        elif n.endswith("ffn_up.weight"):
            p = n[:-len("ffn_up.weight")]
            fused = [raw(p + "ffn_gate.weight"), raw(n)]
        else:
            fused = [raw(n)]
        kinds = {k for _, k in fused}
        if len(kinds) != 1:
            raise ValueError(f"{src}: cannot fuse {n} from tensors of types {sorted(k.name for k in kinds)}")
        data = np.concatenate([d for d, _ in fused], axis=0) if len(fused) > 1 else fused[0][0]
        w.add_tensor(n, np.ascontiguousarray(data), raw_dtype=fused[0][1])
    _write_and_close(w)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("-n", type=int, default=8, help="greedy tokens to generate")
    a = ap.parse_args()
    t0 = time.time()
    m = ReferenceModel(a.model)
    t1 = time.time()
    ids = [int(s) for s in a.tokens.split(",") if s]
    logits, gen, _ = m.greedy(ids, a.n)
    t2 = time.time()
    for i, t in enumerate(ids):
        nxt = int(np.argmax(logits[i]))
        print(f"{i:3d} {t:6d} {m.token_str(t)!r:>16} -> {nxt:6d} {m.token_str(nxt)!r}")
    print("greedy:", " ".join(str(t) for t in gen))
    print("text:", repr("".join(m.token_str(t) for t in gen)))
    print(f"load {t1 - t0:.1f}s, forward+greedy {t2 - t1:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
