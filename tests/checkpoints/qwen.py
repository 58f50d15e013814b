"""Build a tiny, randomly initialised Qwen3-TTS checkpoint in the layout of the published ones.

Run INSIDE the qwen venv (it imports torch, transformers and qwen_tts); the test process itself
has no torch and calls it as a script:

    <qwen venv>/bin/python -m tests.checkpoints.qwen KIND OUT_DIR [--seed N] [--size 1b7|0b6]
                                                        [--eos-frames-per-token F] [--code-groups N]
                                                        [--speakers A,B] [--extra-languages X,Y]
                                                        [--attention-bias]

KIND is one of ``custom_voice``, ``voice_design``, ``base``. The script prints the checkpoint
directory on its last stdout line (``import qwen_tts`` itself prints a flash-attn banner to
stdout before it). From Python (inside the venv): ``build(kind, out_dir, seed=0)``.

What comes out is what ``Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice`` (-VoiceDesign, -Base, and the
0.6B ones with ``--size 0b6``) ship, file for file:

    config.json  generation_config.json  model.safetensors  preprocessor_config.json
    tokenizer_config.json  vocab.json  merges.txt
    speech_tokenizer/{config.json, configuration.json, preprocessor_config.json, model.safetensors}

and it loads through the package's own public loader,
``qwen_tts.Qwen3TTSModel.from_pretrained(dir, device_map="cpu", dtype=torch.float32)``
(offline: a local dir needs no hub). What is real and what is shrunk:

- Real: every config class and model class is the package's; the codec vocabulary is the real
  one (codebook 2048 + 1024 special band = 3072), with the published special ids (pad 2148,
  bos 2149, eos 2150, think 2154 ...), language ids (english 2050 ...) and speaker ids
  (vivian 3065 ...); 16 codebooks; 12.5 frames/s, 1920 samples per frame, 24 kHz; the
  ``tts_model_type`` / ``tts_model_size`` strings; the 9 CustomVoice speakers with their dialects
  (eric -> sichuan_dialect, dylan -> beijing_dialect); the generation defaults.
- Shrunk: every width and depth (a talker of 2 layers, a code predictor of 1, codec convs a few
  channels wide) and the text vocabulary: a byte-level Qwen2-style BPE built here (256 byte
  symbols, a few merges so that ``assistant`` and ``user`` are single tokens, as the prompt
  slicing needs) followed by the Qwen special tokens in their real order (``<|endoftext|>``,
  ``<|im_start|>``, ``<|im_end|>``, ... ``<tts_pad>``, ``<tts_text_bos>``, ``<tts_text_eod>`` ...),
  so the ids differ from the real 151643+ ones and config.json says which they are.
- ``--size 1b7`` (default) mirrors the 1.7B shape (code predictor narrower than the talker, so a
  ``small_to_mtp_projection`` Linear exists) and honours ``instruct``; ``--size 0b6`` mirrors the
  0.6B shape (same widths, the projection is an Identity) and, as on the real 0.6B CustomVoice,
  ``generate_custom_voice`` silently drops ``instruct`` (the package tests
  ``self.model.tts_model_size in "0b6"``). VoiceDesign exists only as 1.7B upstream, but the
  builder does not refuse ``--size 0b6`` for it.

Length of a generation: by default EOS is wired off (a plain random talker samples it now and then,
so lengths would be random): pass ``max_new_tokens``, N gives exactly N-1 frames. With
``--eos-frames-per-token F`` EOS is wired on instead and a generation ends by itself after about F
frames per text token of the prompt (see ``_wire_eos``). Deterministic: the same arguments give
byte-identical files; sampling is then deterministic under ``torch.manual_seed``.

Only the standard library is imported at module level, so the torch-less test process may import
the constants below.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

KINDS = ("custom_voice", "voice_design", "base")
SIZES = ("1b7", "0b6")

# CustomVoice preset speakers as the model card spells them, and the config's lowercase ids.
SPEAKERS = ("Vivian", "Serena", "Uncle_Fu", "Dylan", "Eric", "Ryan", "Aiden", "Ono_Anna", "Sohee")
SPEAKER_IDS = {
    "serena": 3066, "vivian": 3065, "uncle_fu": 3010, "ryan": 3061, "aiden": 2861,
    "ono_anna": 2873, "sohee": 2864, "eric": 2875, "dylan": 2878,
}
SPEAKER_DIALECT = {name: False for name in SPEAKER_IDS}
SPEAKER_DIALECT.update(eric="sichuan_dialect", dylan="beijing_dialect")

# Language names the generate_* functions take (case-insensitive), besides "Auto".
LANGUAGES = ("Chinese", "English", "German", "Italian", "Portuguese", "Spanish", "Japanese",
             "Korean", "French", "Russian")
LANGUAGE_IDS = {
    "chinese": 2055, "english": 2050, "german": 2053, "italian": 2070, "portuguese": 2071,
    "spanish": 2054, "japanese": 2058, "korean": 2064, "french": 2061, "russian": 2069,
}
DIALECT_IDS = {"beijing_dialect": 2074, "sichuan_dialect": 2062}

CODEBOOK_SIZE = 2048
TALKER_VOCAB = CODEBOOK_SIZE + 1024  # codes, then the special band the talker may not sample
CODEC_IDS = dict(
    codec_pad_id=2148, codec_bos_id=2149, codec_eos_token_id=2150, codec_think_id=2154,
    codec_nothink_id=2155, codec_think_bos_id=2156, codec_think_eos_id=2157,
)
NUM_CODE_GROUPS = 16
# ids for a fine-tuned checkpoint's own speakers and added languages: free places in the special band
CUSTOM_SPEAKER_BASE = 3020
EXTRA_LANGUAGE_BASE = 2080
SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 1920

GENERATION_CONFIG = {
    "do_sample": True,
    "repetition_penalty": 1.05,
    "temperature": 0.9,
    "top_p": 1.0,
    "top_k": 50,
    "subtalker_dosample": True,
    "subtalker_temperature": 0.9,
    "subtalker_top_p": 1.0,
    "subtalker_top_k": 50,
    "max_new_tokens": 8192,
}

# The Qwen2/Qwen3 added tokens, in their real order (real ids 151643..151675).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
    "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
    "<tts_text_bos_single>", "<|audio_pad|>",
)
# Added tokens that are not "special" in the real tokenizer_config.json (they are split normally).
_NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>",
                "</think>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                "<|repo_name|>", "<|file_sep|>"}
_ADDITIONAL_SPECIAL = (
    "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<|audio_start|>", "<|audio_end|>",
    "<tts_pad>", "<tts_text_bos>", "<tts_text_bos_single>", "<|audio_pad|>",
)
# Merges: the chains for "assistant" and "user" come first (they must be one token each: the
# package slices prompt ids [:3] and [-5:]); the rest only make ordinary text a little shorter.
_MERGE_WORDS = ("assistant", "user", "system", "Ġthe", "Ġand", "Ġto", "Ġyou", "ing", "Ġis",
                "Hello", "Ġhello", "Ġworld", "Ġspeak", "Ġvoice", "Ġtest")

# Shrunk widths per size flavour. text_hidden_size is 2048 in both real sizes; the talker is 2048
# (1.7B) or 1024 (0.6B) wide; the code predictor is 1024 in both (so 1.7B has a projection).
_DIMS = {
    "1b7": dict(hidden=64, text_hidden=64, cp_hidden=32, heads=4, kv_heads=2, head_dim=16,
                layers=2, inter=128, cp_layers=1, cp_heads=2, cp_kv_heads=1, cp_inter=64),
    "0b6": dict(hidden=32, text_hidden=64, cp_hidden=32, heads=2, kv_heads=1, head_dim=16,
                layers=2, inter=64, cp_layers=1, cp_heads=2, cp_kv_heads=1, cp_inter=64),
}


# ----------------------------------------------------------------------------- text tokenizer

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/Qwen2 byte-level alphabet."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=False))


def _text_vocab() -> tuple[dict[str, int], list[str]]:
    vocab: dict[str, int] = {}
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    merges: list[str] = []
    for word in _MERGE_WORDS:
        # "Ġ" is one symbol (the byte-level space); build the word left to right.
        symbols = list(word)
        cur = symbols[0]
        for nxt in symbols[1:]:
            merged = cur + nxt
            if merged not in vocab:
                merges.append(f"{cur} {nxt}")
                vocab[merged] = len(vocab)
            cur = merged
    return vocab, merges


def _special_ids(base_vocab_size: int) -> dict[str, int]:
    return {tok: base_vocab_size + i for i, tok in enumerate(SPECIAL_TOKENS)}


def _write_text_tokenizer(out: Path) -> dict[str, int]:
    vocab, merges = _text_vocab()
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    ids = _special_ids(len(vocab))
    added = {
        str(i): {
            "content": tok, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": tok not in _NOT_SPECIAL,
        }
        for tok, i in ids.items()
    }
    tokenizer_config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": list(_ADDITIONAL_SPECIAL),
        "audio_bos_token": "<|audio_start|>",
        "audio_eos_token": "<|audio_end|>",
        "audio_token": "<|audio_pad|>",
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "extra_special_tokens": {
            "audio_bos_token": "<|audio_start|>",
            "audio_eos_token": "<|audio_end|>",
            "audio_token": "<|audio_pad|>",
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
        "image_token": "<|image_pad|>",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "processor_class": "Qwen3TTSProcessor",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    }
    _dump(out / "tokenizer_config.json", tokenizer_config)
    _dump(out / "preprocessor_config.json", {
        "padding_side": "left",
        "padding_value": 0.0,
        "processor_class": "Qwen3TTSProcessor",
        "return_attention_mask": True,
    })
    ids["assistant"] = vocab["assistant"]
    ids["__text_vocab_size__"] = len(vocab) + len(SPECIAL_TOKENS)
    return ids


# ----------------------------------------------------------------------------- configs

def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def custom_speakers(names) -> tuple[dict[str, int], dict[str, bool]]:
    """spk_id and spk_is_dialect for a fine-tuned checkpoint's own speakers (none a dialect): ids in the
    special band, clear of the codec, language and dialect ids."""
    ids = {name.lower(): CUSTOM_SPEAKER_BASE + i for i, name in enumerate(names)}
    return ids, {name: False for name in ids}


def main_config(kind: str, size: str = "1b7", text_ids: dict[str, int] | None = None,
                code_groups: int = NUM_CODE_GROUPS, speakers=None, extra_languages=(),
                attention_bias: bool = False) -> dict:
    """config.json as written (a plain dict, only keys the package's config classes accept).

    ``speakers``: a custom_voice checkpoint's speaker names instead of the nine published ones (as a
    fine-tuned checkpoint has them); ``extra_languages``: language names beyond the published ten;
    ``code_groups``: codebooks per frame (16 published); ``attention_bias``: biased q/k/v/o projections in
    the talker (none published; the fast decode loop does not cover them)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")
    if text_ids is None:
        vocab, _ = _text_vocab()
        text_ids = _special_ids(len(vocab))
        text_ids["assistant"] = vocab["assistant"]
        text_ids["__text_vocab_size__"] = len(vocab) + len(SPECIAL_TOKENS)
    d = _DIMS[size]
    half = d["head_dim"] // 2  # M-RoPE sections over head_dim/2 (real: [24, 20, 20] of 64)
    mrope = [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]
    languages = dict(LANGUAGE_IDS)
    if kind == "custom_voice":
        languages.update(DIALECT_IDS)
    languages.update({name.lower(): EXTRA_LANGUAGE_BASE + i for i, name in enumerate(extra_languages)})
    spk_id, spk_is_dialect = custom_speakers(speakers) if speakers else (dict(SPEAKER_IDS), dict(SPEAKER_DIALECT))
    code_predictor = {
        "attention_bias": False,
        "attention_dropout": 0,
        "head_dim": d["head_dim"],
        "hidden_act": "silu",
        "hidden_size": d["cp_hidden"],
        "initializer_range": 0.02,
        "intermediate_size": d["cp_inter"],
        "layer_types": ["full_attention"] * d["cp_layers"],
        "max_length": code_groups + 4,
        "max_position_embeddings": 65536,
        "max_window_layers": 28,
        "model_type": "qwen3_tts_talker_code_predictor",
        "num_attention_heads": d["cp_heads"],
        "num_code_groups": code_groups,
        "num_hidden_layers": d["cp_layers"],
        "num_key_value_heads": d["cp_kv_heads"],
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": CODEBOOK_SIZE,
    }
    talker = {
        "attention_bias": attention_bias,
        "attention_dropout": 0,
        "code_predictor_config": code_predictor,
        **CODEC_IDS,
        "codec_language_id": languages,
        "head_dim": d["head_dim"],
        "hidden_act": "silu",
        "hidden_size": d["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": d["inter"],
        "max_position_embeddings": 32768,
        "model_type": "qwen3_tts_talker",
        "num_attention_heads": d["heads"],
        "num_code_groups": code_groups,
        "num_hidden_layers": d["layers"],
        "num_key_value_heads": d["kv_heads"],
        "position_id_per_seconds": 13,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "interleaved": True,
            "mrope_section": mrope,
            "rope_type": "default",
            "type": "default",
        },
        "rope_theta": 1000000,
        "sliding_window": None,
        # Every model type needs the dicts (the model reads .keys() of both); {} for the others.
        "spk_id": spk_id if kind == "custom_voice" else {},
        "spk_is_dialect": spk_is_dialect if kind == "custom_voice" else {},
        "text_hidden_size": d["text_hidden"],
        "text_vocab_size": _round_up(text_ids["__text_vocab_size__"], 64),
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": TALKER_VOCAB,
    }
    config = {
        "architectures": ["Qwen3TTSForConditionalGeneration"],
        "assistant_token_id": text_ids["assistant"],
        "im_end_token_id": text_ids["<|im_end|>"],
        "im_start_token_id": text_ids["<|im_start|>"],
        "model_type": "qwen3_tts",
        "talker_config": talker,
        "tokenizer_type": "qwen3_tts_tokenizer_12hz",
        "transformers_version": "4.57.3",
        "tts_bos_token_id": text_ids["<tts_text_bos>"],
        "tts_eos_token_id": text_ids["<tts_text_eod>"],
        "tts_model_size": size,
        "tts_model_type": kind,
        "tts_pad_token_id": text_ids["<tts_pad>"],
    }
    if kind == "base":
        # Only the keys Qwen3TTSSpeakerEncoderConfig.__init__ takes (it has no **kwargs).
        # mel_dim 128 and 24 kHz are asserted by extract_speaker_embedding; enc_dim is the
        # talker width (the x-vector is used as a codec-embedding row); the last channel count
        # is the sum of the middle ones (multi-layer feature aggregation concatenates them).
        config["speaker_encoder_config"] = {
            "enc_attention_channels": 8,
            "enc_channels": [16, 16, 16, 16, 48],
            "enc_dilations": [1, 2, 3, 4, 1],
            "enc_dim": d["hidden"],
            "enc_kernel_sizes": [5, 3, 3, 3, 1],
            "enc_res2net_scale": 4,
            "enc_se_channels": 8,
            "mel_dim": 128,
            "sample_rate": SAMPLE_RATE,
        }
    return config


def speech_tokenizer_config(code_groups: int = NUM_CODE_GROUPS) -> dict:
    """speech_tokenizer/config.json (Qwen3TTSTokenizerV2Config: Mimi encoder + 12 Hz decoder)."""
    encoder = {
        # Mimi (transformers.MimiConfig); the real one is 512 wide with 8 layers and 32 codebooks.
        "_frame_rate": 12.5,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "audio_channels": 1,
        "codebook_dim": 8,
        "codebook_size": CODEBOOK_SIZE,
        "compress": 2,
        "dilation_growth_rate": 2,
        "head_dim": 8,
        "hidden_act": "gelu",
        "hidden_size": 16,
        "initializer_range": 0.02,
        "intermediate_size": 32,
        "kernel_size": 7,
        "last_kernel_size": 3,
        "layer_scale_initial_scale": 0.01,
        "max_position_embeddings": 8000,
        "model_type": "mimi",
        "norm_eps": 1e-05,
        "num_attention_heads": 2,
        "num_filters": 2,
        "num_hidden_layers": 1,
        "num_key_value_heads": 2,
        "num_quantizers": 32,
        "num_residual_layers": 1,
        "num_semantic_quantizers": 1,
        "pad_mode": "constant",
        "residual_kernel_size": 3,
        "rope_theta": 10000.0,
        "sampling_rate": SAMPLE_RATE,
        "sliding_window": 250,
        "trim_right_ratio": 1.0,
        "upsample_groups": 16,  # must divide hidden_size
        "upsampling_ratios": [8, 6, 5, 4],  # 960 samples at 25 Hz, then /2: 1920 at 12.5 Hz
        "use_cache": False,
        "use_causal_conv": True,
        "use_conv_shortcut": False,
        "use_streaming": False,
        "vector_quantization_hidden_dimension": 8,
    }
    decoder = {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "codebook_dim": 16,
        "codebook_size": CODEBOOK_SIZE,
        "decoder_dim": 32,  # halves per upsample block: 32 -> 16 -> 8 -> 4 -> 2
        "head_dim": 8,
        "hidden_act": "silu",
        "hidden_size": 16,
        "intermediate_size": 32,
        "latent_dim": 16,
        "layer_scale_initial_scale": 0.01,
        "max_position_embeddings": 8000,
        "num_attention_heads": 2,
        "num_hidden_layers": 1,
        "num_key_value_heads": 2,
        "num_quantizers": code_groups,
        "num_semantic_quantizers": 1,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000,
        "semantic_codebook_size": 4096,
        "sliding_window": 72,
        "upsample_rates": [8, 5, 4, 3],  # both must be lists: the code adds them
        "upsampling_ratios": [2, 2],  # 8*5*4*3*2*2 = 1920 samples per frame
        "vector_quantization_hidden_dimension": 16,
    }
    return {
        "architectures": ["Qwen3TTSTokenizerV2Model"],
        "decode_upsample_rate": SAMPLES_PER_FRAME,
        "decoder_config": decoder,
        "encode_downsample_rate": SAMPLES_PER_FRAME,
        "encoder_config": encoder,
        "encoder_valid_num_quantizers": code_groups,
        "input_sample_rate": SAMPLE_RATE,
        "model_type": "qwen3_tts_tokenizer_12hz",
        "output_sample_rate": SAMPLE_RATE,
        "transformers_version": "4.57.3",
    }


SPEECH_PREPROCESSOR_CONFIG = {
    "chunk_length_s": None,
    "feature_extractor_type": "EncodecFeatureExtractor",
    "feature_size": 1,
    "overlap": None,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": True,
    "sampling_rate": SAMPLE_RATE,
}


# ----------------------------------------------------------------------------- build

def _dump(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _save_weights(model, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})


_MARK = 4.0  # value of the wired channels c and t: large enough that RMSNorm barely varies them
_EOS_GAIN = 1000.0  # slope of the EOS logit in the marked fraction: a sharp, seed-proof switch


def _rescale_talker(model, seed: int) -> None:
    """Give the talker unit-scale activations, as a trained model has.

    With the HF init (std 0.02 everywhere) a text-projection output is ~3e-4 per channel, a
    codec embedding 0.02, and attention and MLP outputs are tiny next to a position's own input:
    the next code barely depends on the text, the speaker or the language (with one seed, two
    speakers gave identical audio), and the constant channel wired by ``_wire_eos`` would swamp
    the text. Embeddings get std 0.25 (16 codec embeddings sum to ~1 per channel), the text
    projection and every talker layer a variance-preserving init (std 1/sqrt(fan_in)), and
    codec_head std 2/sqrt(hidden) (logits of std ~2, so sampling follows the context).
    """
    import torch

    gen = torch.Generator().manual_seed(seed + 3)

    def fill(weight, std):
        weight.copy_(torch.randn(weight.shape, generator=gen) * std)

    talker = model.talker
    with torch.no_grad():
        tables = [talker.model.text_embedding, talker.model.codec_embedding,
                  *talker.code_predictor.model.codec_embedding]
        for emb in tables:
            fill(emb.weight, 0.25)
        linears = [talker.text_projection.linear_fc1, talker.text_projection.linear_fc2]
        for layer in talker.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            linears += [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj,
                        mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        for lin in linears:
            fill(lin.weight, lin.weight.shape[1] ** -0.5)
            if lin.bias is not None:
                lin.bias.zero_()
        fill(talker.codec_head.weight, 2.0 * talker.config.hidden_size ** -0.5)


def _wire_eos(model, base_vocab: int, frames_per_token: float | None) -> None:
    """Decide when the random talker emits EOS, by hand-setting a few weights.

    Left alone, the talker's EOS logit is just another random number: it lands in the top 50
    about 2% of steps and is sampled now and then, so a random model stops early at random (seen:
    one run in six of 200 frames stopped at 30). Three residual channels of the talker are
    reserved (every other writer into them is zeroed: embeddings, the x-vector projection,
    attention and MLP outputs; no codec_head row but EOS reads them):

    - c = _MARK at every position: every talker input carries exactly one text-projection
      output (text, tts_pad, tts_bos or the trailing text), whose fc2 bias supplies it;
    - t = _MARK at positions that carry an ordinary text token (byte-level BPE ids, not the
      special tokens): one text-embedding channel marks them, one fc1/fc2 unit copies it to t;
    - e ~ _MARK * the fraction of marked positions so far: layer 0's first query head has a zero
      query, so it attends uniformly over the causal prefix, and reads t through value channel 0.

    ``frames_per_token=None``: the EOS row reads ``-100 / _MARK * c`` (logit below -30 after the
    final norm; the other logits stay under ~10): never sampled, never the argmax, so N new
    tokens give exactly N-1 frames. F: the EOS row reads ``_EOS_GAIN * (tau * c - e)`` with
    tau = 1 / (1 + F); its sign flips once the generated frames dilute the marked text below
    tau, after about F frames per marked token (the role words "assistant" and "\\n" and the
    instruct count as text) minus the ~8 special prompt positions, and then EOS wins outright
    (same length for every seed; a voice-clone prompt's reference frames dilute too, so ICL
    clones stop sooner).
    """
    import torch

    talker = model.talker
    hidden = talker.config.hidden_size
    t_dim, e_dim, c_dim = hidden - 3, hidden - 2, hidden - 1
    reserved = [t_dim, e_dim, c_dim]
    eos = talker.config.codec_eos_token_id
    with torch.no_grad():
        talker.model.codec_embedding.weight[:, reserved] = 0
        for emb in talker.code_predictor.model.codec_embedding:
            emb.weight[:, reserved] = 0
        if model.speaker_encoder is not None:  # the x-vector is used as a codec-embedding row
            model.speaker_encoder.fc.weight[reserved] = 0
            model.speaker_encoder.fc.bias[reserved] = 0
        for layer in talker.model.layers:
            layer.self_attn.o_proj.weight[reserved] = 0
            layer.mlp.down_proj.weight[reserved] = 0
        fc1, fc2 = talker.text_projection.linear_fc1, talker.text_projection.linear_fc2
        fc2.weight[reserved] = 0
        fc2.bias[reserved] = 0
        fc2.bias[c_dim] = _MARK
        head = talker.codec_head.weight
        head[:, reserved] = 0
        head[eos] = 0
        if frames_per_token is None:
            head[eos, c_dim] = -100.0 / _MARK
            return
        tau = 1.0 / (1.0 + float(frames_per_token))
        text_emb = talker.model.text_embedding.weight
        z = text_emb.shape[1] - 1  # marker dimension of the text embedding
        unit = fc1.weight.shape[0] - 1  # the fc1/fc2 hidden unit that copies it
        text_emb[:, z] = 0
        text_emb[:base_vocab, z] = 1.0
        fc1.weight[:, z] = 0
        fc1.weight[unit] = 0
        fc1.weight[unit, z] = 10.0
        fc1.bias[unit] = 0
        fc2.weight[:, unit] = 0
        fc2.weight[t_dim, unit] = 0.1 * _MARK  # silu(10) ~ 10 -> t = _MARK
        layer0 = talker.model.layers[0]
        attn = layer0.self_attn
        head_dim = attn.head_dim
        attn.q_proj.weight[:head_dim] = 0  # query head 0: zero query, uniform attention
        attn.v_proj.weight[0] = 0  # kv head 0, channel 0 carries t
        # t reaches v through the input RMSNorm; scale it so that e ~ _MARK * the marked fraction,
        # calibrated on a text position of the non-streaming prompt (text + codec_pad).
        pad = talker.model.codec_embedding.weight[talker.config.codec_pad_id]
        text_x = talker.text_projection(text_emb[:base_vocab]) + pad
        t_hat = layer0.input_layernorm(text_x)[:, t_dim].mean().item()
        attn.v_proj.weight[0, t_dim] = _MARK / t_hat
        attn.o_proj.weight[e_dim, 0] = 1.0
        head[eos, c_dim] = _EOS_GAIN * tau
        head[eos, e_dim] = -_EOS_GAIN


def _build_speech_tokenizer(out: Path, seed: int, code_groups: int = NUM_CODE_GROUPS) -> None:
    import torch
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model

    cfg = speech_tokenizer_config(code_groups)
    torch.manual_seed(seed + 1)
    model = Qwen3TTSTokenizerV2Model(Qwen3TTSTokenizerV2Config(**cfg)).eval()
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, buf in sorted(model.state_dict(keep_vars=True).items()):
            # Codebooks start at zero upstream (trained values come from the checkpoint): with
            # zeros the decoder ignores the codes and the encoder maps every frame to code 0.
            if name.endswith("_codebook.embedding_sum") or name.endswith("codebook.embed_sum"):
                buf.copy_(torch.randn(buf.shape, generator=gen))
        # The HF init (std 0.02) shrinks the signal ~10x per conv layer, so the waveform would
        # come out around 1e-10: re-initialise the convolutions variance-preserving, then scale
        # the last one so that random codes decode to noise of RMS ~0.1 (clamped to [-1, 1]).
        for _name, mod in sorted(model.named_modules()):
            if isinstance(mod, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                w = mod.weight
                if isinstance(mod, torch.nn.ConvTranspose1d):
                    fan_in = w.shape[0] * w.shape[2] / mod.stride[0]
                else:
                    fan_in = w.shape[1] * w.shape[2]
                w.copy_(torch.randn(w.shape, generator=gen) / fan_in ** 0.5)
                if mod.bias is not None:
                    mod.bias.zero_()
        last = model.decoder.decoder[-1]  # its output is the waveform before the clamp
        seen = []
        hook = last.register_forward_hook(lambda mod, args, out: seen.append(out))
        codes = torch.randint(0, CODEBOOK_SIZE, (1, code_groups, 25), generator=gen)
        model.decoder(codes)
        hook.remove()
        rms = seen[0].pow(2).mean().sqrt().item()
        last.conv.weight.mul_(0.1 / max(rms, 1e-12))
    sub = out / "speech_tokenizer"
    sub.mkdir(parents=True, exist_ok=True)
    _dump(sub / "config.json", cfg)
    # ModelScope metadata shipped next to the real codec; nothing in the package reads it.
    _dump(sub / "configuration.json", {"framework": "pytorch", "task": "feature-extraction"})
    _dump(sub / "preprocessor_config.json", SPEECH_PREPROCESSOR_CONFIG)
    _save_weights(model, sub / "model.safetensors")


def build(kind: str, out_dir, seed: int = 0, size: str = "1b7", eos_frames_per_token: float | None = None,
          code_groups: int = NUM_CODE_GROUPS, speakers=None, extra_languages=(), attention_bias: bool = False) -> Path:
    """Write a tiny random checkpoint of ``kind`` into ``out_dir`` and return its path.

    ``eos_frames_per_token=None`` (default): EOS can never be sampled, so a generation always
    yields exactly ``max_new_tokens - 1`` frames. A number F: EOS becomes reachable and a
    generation stops by itself after roughly F frames per text token of the prompt (see
    ``_wire_eos``), so no ``max_new_tokens`` is needed. ``code_groups``, ``speakers``,
    ``extra_languages`` and ``attention_bias``: as ``main_config`` takes them (a checkpoint unlike the
    published ones).
    """
    import torch
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    with torch.random.fork_rng(devices=[]):
        text_ids = _write_text_tokenizer(out)
        cfg = main_config(kind, size, text_ids, code_groups, speakers, extra_languages, attention_bias)
        _dump(out / "config.json", cfg)
        _dump(out / "generation_config.json", GENERATION_CONFIG)

        torch.manual_seed(seed)
        model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**cfg)).eval()
        _rescale_talker(model, seed)
        _wire_eos(model, base_vocab=min(text_ids[t] for t in SPECIAL_TOKENS),
                  frames_per_token=eos_frames_per_token)
        _save_weights(model, out / "model.safetensors")
        _build_speech_tokenizer(out, seed, code_groups)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=SIZES, default="1b7",
                        help="1b7: instruct honoured (default); 0b6: instruct dropped by "
                             "generate_custom_voice, as on the real 0.6B")
    parser.add_argument("--eos-frames-per-token", type=float, default=None, metavar="F",
                        help="make EOS reachable: stop after about F frames per text token "
                             "(default: EOS is never sampled; pass max_new_tokens)")
    parser.add_argument("--code-groups", type=int, default=NUM_CODE_GROUPS, help="codebooks per frame (16 published)")
    parser.add_argument("--speakers", default=None, help="comma-separated: custom_voice speakers instead of the nine")
    parser.add_argument("--extra-languages", default="", help="comma-separated language names beyond the ten")
    parser.add_argument("--attention-bias", action="store_true", help="biased attention projections in the talker")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = build(args.kind, args.out_dir, seed=args.seed, size=args.size,
                 eos_frames_per_token=args.eos_frames_per_token, code_groups=args.code_groups,
                 speakers=args.speakers.split(",") if args.speakers else None,
                 extra_languages=tuple(filter(None, args.extra_languages.split(","))),
                 attention_bias=args.attention_bias)
    print(path.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
