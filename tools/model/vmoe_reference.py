"""PyTorch reference implementation of the model specification,
docs/model-spec.md.

This module is the spec in executable form: the C++ engine is checked number for
number against it (tests/parity), and the exporter takes its tensor names and
shapes from it. It favours readability over speed: every routing rule of the
spec is a short function whose docstring states the rule.

  ModelConfig.from_architecture(arch)   the `architecture` object, defaults applied
  tensor_shapes(config)                 the spec's weight table for one config
  VisionMoE(config)                     the model; forward() -> (logits, routing)

Routing results carry a `near_tie` flag per decision: a decision whose outcome
could flip under float32 rounding differences (two gate probabilities, or two
Batch Priority Routing priorities, closer than the thresholds below). Parity
tests skip such decisions instead of failing on them.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import torch
from torch import nn

# Gate probabilities closer than this may be ordered differently by an engine
# whose float32 accumulation order differs from PyTorch's (that moves them by
# ~1e-6); 1e-4 leaves a wide margin and still flags under 1% of decisions for
# the random models of tools/model/export_model.py.
GATE_TIE_THRESHOLD = 1e-4
# Two tokens whose BPR priorities w_{t,0} are this close may swap places in the
# priority order.
PRIORITY_TIE_THRESHOLD = 1e-5


class ConfigError(ValueError):
    """An architecture object that docs/model-spec.md does not allow; says
    which field."""


# ----------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------

_REQUIRED_SIZES = ("image_size", "patch_size", "dim", "depth", "heads",
                   "mlp_dim", "num_classes")
_ARCH_FIELDS = set(_REQUIRED_SIZES) | {"norm_eps", "class_token", "global_pool",
                                      "moe"}
_MOE_FIELDS = {"layers", "num_experts", "top_k", "routing", "renormalize",
               "capacity_factor", "batch_priority"}


@dataclasses.dataclass(frozen=True)
class MoeConfig:
    """The spec's `moe` object; `layers` empty means a dense model."""
    layers: tuple[int, ...] = ()
    num_experts: int = 0        # E
    top_k: int = 0              # k
    routing: str = "image"      # "image" or "token"
    renormalize: bool = True    # image routing only
    capacity_factor: float = 1.0  # token routing only
    batch_priority: bool = True   # token routing only


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The spec's architecture object with every default applied."""
    image_size: int   # S
    patch_size: int   # P
    dim: int          # D
    depth: int        # L
    heads: int        # H
    mlp_dim: int      # F
    num_classes: int  # C
    norm_eps: float = 1e-6
    class_token: bool = False
    global_pool: str = "avg"
    moe: MoeConfig = MoeConfig()

    @staticmethod
    def from_architecture(arch: dict) -> ModelConfig:
        """Validates a manifest/config `architecture` object and applies defaults.

        Raises ConfigError naming the offending field, so that a typo such as
        "num_expert" is reported instead of silently taking a default.
        """
        _check_fields("architecture", arch, _ARCH_FIELDS, set(_REQUIRED_SIZES))
        sizes = {name: _positive_int(arch, name) for name in _REQUIRED_SIZES}
        config = ModelConfig(
            **sizes,
            norm_eps=_positive_float(arch, "norm_eps", 1e-6),
            class_token=_bool(arch, "class_token", False),
            global_pool=_choice(arch, "global_pool", ("avg", "token"), "avg"),
            moe=_moe_config(arch.get("moe", {}), sizes["depth"]))
        config._check_consistency()
        return config

    def _check_consistency(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} is not a multiple "
                              f"of patch_size {self.patch_size}")
        if self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} is not a multiple of heads "
                              f"{self.heads}")
        if self.global_pool == "token" and not self.class_token:
            raise ConfigError('global_pool "token" needs class_token true')

    def to_architecture(self) -> dict:
        """The architecture object with every default written out (manifest form)."""
        arch = dataclasses.asdict(self)
        moe = arch["moe"]
        moe["layers"] = list(self.moe.layers)
        arch["moe"] = moe if self.moe.layers else {"layers": []}
        return arch

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:  # N
        return self.grid * self.grid

    @property
    def num_tokens(self) -> int:  # T
        return self.num_patches + int(self.class_token)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def expert_capacity(self) -> int:
        """Token routing: cap = ceil(k * T * capacity_factor / E).

        Computed exactly on capacity_factor's decimal value as written (the
        shortest decimal that round-trips its float32 storage in the manifest),
        so 1.1 means 11/10: binary rounding cannot lift a product that is an
        integer, such as 2 * 25 * 1.1 / 5 = 11, to the next integer.
        """
        factor = Fraction(str(np.float32(self.moe.capacity_factor)))
        return math.ceil(self.moe.top_k * self.num_tokens * factor
                         / self.moe.num_experts)


def _check_fields(where: str, obj: dict, allowed: set, required: set) -> None:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where} must be a JSON object, got {obj!r}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; "
                          f"allowed: {sorted(allowed)}")
    missing = sorted(required - set(obj))
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {missing}")


def _positive_int(obj: dict, name: str, default: int | None = None,
                  prefix: str = "") -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{prefix}{name} must be a positive integer, "
                          f"got {value!r}")
    return value


def _positive_float(obj: dict, name: str, default: float, prefix: str = "") -> float:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not value > 0:
        raise ConfigError(f"{prefix}{name} must be a positive number, "
                          f"got {value!r}")
    return float(value)


def _bool(obj: dict, name: str, default: bool, prefix: str = "") -> bool:
    value = obj.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{prefix}{name} must be true or false, got {value!r}")
    return value


def _choice(obj: dict, name: str, allowed: tuple, default: str,
            prefix: str = "") -> str:
    value = obj.get(name, default)
    if value not in allowed:
        raise ConfigError(f"{prefix}{name} must be one of {list(allowed)}, "
                          f"got {value!r}")
    return value


def _moe_config(moe: dict, depth: int) -> MoeConfig:
    _check_fields("moe", moe, _MOE_FIELDS, set())
    layers = moe.get("layers", [])
    if not isinstance(layers, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise ConfigError(f"moe.layers must be a list of integers, got {layers!r}")
    if not layers:
        if moe.get("num_experts", 0) or moe.get("top_k", 0):
            raise ConfigError("moe.layers is empty (a dense model), so "
                              "moe.num_experts and moe.top_k must be absent")
        return MoeConfig()
    if len(set(layers)) != len(layers):
        raise ConfigError(f"moe.layers has duplicates: {layers}")
    outside = [i for i in layers if not 0 <= i < depth]
    if outside:
        raise ConfigError(f"moe.layers {outside} outside [0, depth={depth})")
    num_experts = _positive_int(moe, "num_experts", prefix="moe.")
    top_k = _positive_int(moe, "top_k", prefix="moe.")
    if top_k > num_experts:
        raise ConfigError(f"moe.top_k {top_k} exceeds moe.num_experts "
                          f"{num_experts}")
    return MoeConfig(
        layers=tuple(sorted(layers)), num_experts=num_experts, top_k=top_k,
        routing=_choice(moe, "routing", ("image", "token"), "image", "moe."),
        renormalize=_bool(moe, "renormalize", True, "moe."),
        capacity_factor=_positive_float(moe, "capacity_factor", 1.0, "moe."),
        batch_priority=_bool(moe, "batch_priority", True, "moe."))


def tensor_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The spec's weight table: every state_dict name and shape, in the order
    VisionMoE.state_dict() lists them (so also the exporter's file order)."""
    d, f = config.dim, config.mlp_dim
    p = config.patch_size
    shapes = {"patch_embed.proj.weight": (d, 3, p, p),
              "patch_embed.proj.bias": (d,)}
    if config.class_token:
        shapes["cls_token"] = (1, 1, d)
    shapes["pos_embed"] = (1, config.num_tokens, d)
    mlp = {"fc1.weight": (f, d), "fc1.bias": (f,),
           "fc2.weight": (d, f), "fc2.bias": (d,)}
    for i in range(config.depth):
        block = {"norm1.weight": (d,), "norm1.bias": (d,),
                 "attn.qkv.weight": (3 * d, d), "attn.qkv.bias": (3 * d,),
                 "attn.proj.weight": (d, d), "attn.proj.bias": (d,),
                 "norm2.weight": (d,), "norm2.bias": (d,)}
        if i in config.moe.layers:
            block["moe.router.weight"] = (config.moe.num_experts, d)
            for e in range(config.moe.num_experts):
                block.update({f"moe.experts.{e}.{k}": v for k, v in mlp.items()})
        else:
            block.update({f"mlp.{k}": v for k, v in mlp.items()})
        shapes.update({f"blocks.{i}.{k}": v for k, v in block.items()})
    shapes.update({"norm.weight": (d,), "norm.bias": (d,),
                   "head.weight": (config.num_classes, d),
                   "head.bias": (config.num_classes,)})
    return shapes


# ----------------------------------------------------------------------------
# Routing rules (pure functions of gate probabilities)
# ----------------------------------------------------------------------------

def top_k_choices(probs: torch.Tensor, k: int):
    """The k largest probabilities along the last axis, largest first; ties go
    to the lower expert index (a stable descending sort keeps index order).

    Returns (weights [..., k], experts [..., k], near_tie [...]): near_tie when
    two neighbours among the k+1 largest are closer than GATE_TIE_THRESHOLD, so
    that either the chosen set or the choice order could flip.
    """
    ordered, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    leading = ordered[..., :k + 1]
    gaps = leading[..., :-1] - leading[..., 1:]
    near_tie = (gaps < GATE_TIE_THRESHOLD).any(dim=-1)
    return ordered[..., :k], order[..., :k], near_tie


def priority_order(weights: torch.Tensor, batch_priority: bool) -> torch.Tensor:
    """Token order within one choice round: with Batch Priority Routing by
    descending w_{t,0} (ties: lower token index), otherwise by token index.
    `weights` is one image's [T, k]."""
    if not batch_priority:
        return torch.arange(weights.shape[0])
    return torch.sort(weights[:, 0], descending=True, stable=True).indices


def assign_slots(weights: torch.Tensor, experts: torch.Tensor, capacity: int,
                 num_experts: int, batch_priority: bool) -> torch.Tensor:
    """Which of one image's assignments keep an expert slot.

    Slots are handed out choice by choice (every token's choice 0, then every
    token's choice 1, ...), tokens in priority order within a choice; an
    assignment is kept if its expert has fewer than `capacity` kept so far.
    weights, experts: [T, k]. Returns kept: [T, k] bool.
    """
    order = priority_order(weights, batch_priority).tolist()
    choices = experts.tolist()
    filled = [0] * num_experts
    kept = torch.zeros(experts.shape, dtype=torch.bool)
    for choice in range(experts.shape[1]):
        for token in order:
            expert = choices[token][choice]
            if filled[expert] < capacity:
                filled[expert] += 1
                kept[token, choice] = True
    return kept


def priority_near_ties(weights: torch.Tensor, experts: torch.Tensor,
                       kept: torch.Tensor) -> torch.Tensor:
    """Tokens whose kept flags depend on how near-equal BPR priorities are
    ordered: token t is flagged if some token s has |w_{s,0} - w_{t,0}| below
    PRIORITY_TIE_THRESHOLD, asks for the same expert in the same choice round,
    and got the opposite kept flag (so swapping the two swaps their fates).
    One image's [T, k] tensors; returns [T] bool."""
    w0 = weights[:, 0]
    close = (w0[:, None] - w0[None, :]).abs() < PRIORITY_TIE_THRESHOLD
    close.fill_diagonal_(False)
    same_expert = experts[:, None, :] == experts[None, :, :]   # [T, T, k]
    opposite_fate = kept[:, None, :] != kept[None, :, :]
    matters = close[:, :, None] & same_expert & opposite_fate
    return matters.any(dim=2).any(dim=1)


@dataclasses.dataclass
class ImageRouting:
    """One MoE layer's whole-image routing for a batch."""
    layer: int
    experts: torch.Tensor   # [B, k] int64, choice order (descending gate)
    weights: torch.Tensor   # [B, k] float32, renormalised if configured
    near_tie: torch.Tensor  # [B] bool


@dataclasses.dataclass
class TokenRouting:
    """One MoE layer's per-token routing for a batch."""
    layer: int
    experts: torch.Tensor   # [B, T, k] int64, choice order
    weights: torch.Tensor   # [B, T, k] float32 gate probabilities
    kept: torch.Tensor      # [B, T, k] bool: the assignment got a slot
    near_tie: torch.Tensor  # [B, T] bool: gate or BPR-priority near tie


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------

class Mlp(nn.Module):
    """fc2(GELU(fc1(h))); GELU in its exact erf form. Also one expert."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, h):
        return self.fc2(self.act(self.fc1(h)))


class Attention(nn.Module):
    """Multi-head self-attention; qkv columns laid out as [3][H][D/H]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, h):
        batch, tokens, dim = h.shape
        qkv = self.qkv(h).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)          # each [B, H, T, D/H]
        scores = q @ k.transpose(-2, -1) / math.sqrt(dim // self.heads)
        out = scores.softmax(dim=-1) @ v              # [B, H, T, D/H]
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class MoeLayer(nn.Module):
    """A mixture of experts replacing a block's MLP (image or token routing)."""

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.config = config
        self.layer = layer
        moe = config.moe
        self.router = nn.Linear(config.dim, moe.num_experts, bias=False)
        self.experts = nn.ModuleList(
            Mlp(config.dim, config.mlp_dim) for _ in range(moe.num_experts))

    def forward(self, h):
        if self.config.moe.routing == "image":
            return self._image_routed(h)
        return self._token_routed(h)

    def _image_routed(self, h):
        """g = softmax(Wr . mean of the patch tokens); the image's k experts
        process all its tokens; only those k experts are evaluated."""
        moe = self.config.moe
        patches = h[:, 1:] if self.config.class_token else h
        gates = self.router(patches.mean(dim=1)).softmax(dim=-1)     # [B, E]
        weights, experts, near_tie = top_k_choices(gates, moe.top_k)
        if moe.renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(h)
        for b in range(h.shape[0]):
            for w, e in zip(weights[b].tolist(), experts[b].tolist()):
                out[b] += w * self.experts[e](h[b])
        return out, ImageRouting(self.layer, experts, weights, near_tie)

    def _token_routed(self, h):
        """Each token's top-k experts, capped per image at expert_capacity;
        the output sums the kept choices' weighted experts (no renormalisation;
        a token with nothing kept gets 0)."""
        moe = self.config.moe
        probs = self.router(h).softmax(dim=-1)                       # [B, T, E]
        weights, experts, near_tie = top_k_choices(probs, moe.top_k)
        kept = torch.stack([
            assign_slots(weights[b], experts[b], self.config.expert_capacity,
                         moe.num_experts, moe.batch_priority)
            for b in range(h.shape[0])])
        if moe.batch_priority:
            near_tie |= torch.stack([
                priority_near_ties(weights[b], experts[b], kept[b])
                for b in range(h.shape[0])])
        out = torch.zeros_like(h)
        for e in range(moe.num_experts):
            b, t, j = torch.nonzero(kept & (experts == e), as_tuple=True)
            if len(b):
                y = self.experts[e](h[b, t]) * weights[b, t, j][:, None]
                out.index_put_((b, t), y, accumulate=True)
        return out, TokenRouting(self.layer, experts, weights, kept, near_tie)


class Block(nn.Module):
    """x = x + Attn(LN1(x)); x = x + (MoE or MLP)(LN2(x))."""

    def __init__(self, config: ModelConfig, index: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.attn = Attention(config.dim, config.heads)
        self.norm2 = nn.LayerNorm(config.dim, eps=config.norm_eps)
        if index in config.moe.layers:
            self.moe = MoeLayer(config, index)
        else:
            self.mlp = Mlp(config.dim, config.mlp_dim)

    def forward(self, x):
        """Returns (x, routing) with routing None for a dense block."""
        x = x + self.attn(self.norm1(x))
        h = self.norm2(x)
        if hasattr(self, "moe"):
            y, routing = self.moe(h)
            return x + y, routing
        return x + self.mlp(h), None


class PatchEmbed(nn.Module):
    """Convolution with kernel = stride = P; tokens row-major over the grid."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, config.dim, kernel_size=config.patch_size,
                              stride=config.patch_size)

    def forward(self, images):
        return self.proj(images).flatten(2).transpose(1, 2)   # [B, N, D]


class VisionMoE(nn.Module):
    """The ViT / V-MoE of docs/model-spec.md, with its state_dict names.

    Parameters are left at PyTorch's default initialisation: load real or
    exported weights with load_state_dict before use.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        if config.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, config.num_tokens, config.dim))
        self.blocks = nn.ModuleList(
            Block(config, i) for i in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.head = nn.Linear(config.dim, config.num_classes)

    def forward(self, images: torch.Tensor):
        """images: normalised [B, 3, S, S] float32.

        Returns (logits [B, C], routing): one ImageRouting or TokenRouting per
        MoE layer, in layer order.
        """
        x = self.patch_embed(images)
        if self.config.class_token:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        routing = []
        for block in self.blocks:
            x, layer_routing = block(x)
            if layer_routing is not None:
                routing.append(layer_routing)
        x = self.norm(x)
        if self.config.global_pool == "token":
            pooled = x[:, 0]
        else:
            pooled = (x[:, 1:] if self.config.class_token else x).mean(dim=1)
        return self.head(pooled), routing


# ----------------------------------------------------------------------------
# Training-friendly forward (tools/demo/train.py)
# ----------------------------------------------------------------------------
# The same arithmetic as VisionMoE.forward, batched for training: whole-image
# routing runs each expert once on all the images that chose it, instead of
# image by image, and the router's logits are returned for auxiliary losses
# (Mobile V-MoE's superclass loss, load balancing). Inference and the parity
# tests keep using forward(); test_train_forward (tests/models) checks that both
# give the same logits.

def _moe_forward_train(layer: MoeLayer, h: torch.Tensor):
    """(output, router_logits) of one MoE layer. Image routing: logits [B, E]
    of the mean patch token, outputs batched per expert. Token routing: the
    per-image path of forward(), with per-token logits [B, T, E]."""
    moe = layer.config.moe
    if moe.routing != "image":
        out, _ = layer._token_routed(h)
        return out, layer.router(h)
    patches = h[:, 1:] if layer.config.class_token else h
    logits = layer.router(patches.mean(dim=1))                   # [B, E]
    weights, experts, _ = top_k_choices(logits.softmax(dim=-1), moe.top_k)
    if moe.renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(h)
    for e in range(moe.num_experts):
        b, j = torch.nonzero(experts == e, as_tuple=True)
        if len(b):
            y = layer.experts[e](h[b]) * weights[b, j][:, None, None]
            out = out.index_add(0, b, y)
    return out, logits


def _attention_train(attn: Attention, h: torch.Tensor) -> torch.Tensor:
    """Attention.forward with the two batched products as einsums, which
    PyTorch runs faster than the permuted matmuls on CPU. Same arithmetic."""
    batch, tokens, dim = h.shape
    head_dim = dim // attn.heads
    q, k, v = attn.qkv(h).reshape(batch, tokens, 3, attn.heads,
                                  head_dim).unbind(2)     # each [B, T, H, D/H]
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(head_dim)
    out = torch.einsum("bhij,bjhd->bihd", scores.softmax(dim=-1), v)
    return attn.proj(out.reshape(batch, tokens, dim))


def forward_train(model: VisionMoE, images: torch.Tensor):
    """images: normalised [B, 3, S, S]. Returns (logits [B, C], router_logits):
    one tensor per MoE layer in layer order (see _moe_forward_train).
    Differentiable through the gates (the k chosen weights) and the experts."""
    config = model.config
    x = model.patch_embed(images)
    if config.class_token:
        x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
    x = x + model.pos_embed
    router_logits = []
    for block in model.blocks:
        x = x + _attention_train(block.attn, block.norm1(x))
        h = block.norm2(x)
        if hasattr(block, "moe"):
            y, logits = _moe_forward_train(block.moe, h)
            router_logits.append(logits)
            x = x + y
        else:
            x = x + block.mlp(h)
    x = model.norm(x)
    if config.global_pool == "token":
        pooled = x[:, 0]
    else:
        pooled = (x[:, 1:] if config.class_token else x).mean(dim=1)
    return model.head(pooled), router_logits


def _linear_onednn(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """nn.Linear on [B, T, in] as a 1x1 convolution over a channels-last view
    of the same memory: oneDNN then does the product (and its backward)
    instead of the BLAS PyTorch links, which on Debian is the unoptimised
    reference BLAS, 10-30x slower here. Same arithmetic up to the order of
    float32 additions; other shapes keep F.linear."""
    if x.dim() != 3:
        return nn.functional.linear(x, self.weight, self.bias)
    batch, tokens, width = x.shape
    x4 = x.reshape(batch, tokens, 1, width).permute(0, 3, 1, 2)  # channels-last
    y = nn.functional.conv2d(x4, self.weight[:, :, None, None], self.bias)
    return y.permute(0, 2, 3, 1).reshape(batch, tokens, -1)


def use_onednn_linears(model: nn.Module) -> nn.Module:
    """Makes every nn.Linear of `model` run as _linear_onednn (training and
    bulk evaluation speed; the state_dict is unchanged). Returns `model`."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.forward = _linear_onednn.__get__(module, nn.Linear)
    return model
