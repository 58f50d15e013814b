"""Build random-weight Chatterbox checkpoints in the file layout the package's own loaders read.

Run INSIDE the chatterbox venv (it imports torch and chatterbox); the test process has no torch
and calls it as a script:

    <venv>/bin/python -m tests.checkpoints.chatterbox {standard,turbo,multilingual} OUT_DIR [--seed N] [--stop-after N]

The directory appears only when complete (built in a staging folder, then renamed), with a
`build.json` saying how it was made; the last stdout line is its path.

What comes out, file for file, is what `ChatterboxTTS.from_local` / `ChatterboxTurboTTS.from_local`
read from ResembleAI/chatterbox and ResembleAI/chatterbox-turbo (and what
`ChatterboxMultilingualTTS.from_local` reads, from the same ResembleAI/chatterbox repository):

    standard:     ve.safetensors  t3_cfg.safetensors  s3gen.safetensors  tokenizer.json  conds.pt
    turbo:        ve.safetensors  t3_turbo_v1.safetensors  s3gen_meanflow.safetensors  conds.pt
                  tokenizer.json  tokenizer_config.json (transformers 5's format), vocab.json, merges.txt
    multilingual: ve.pt  t3_mtl23ls_v2.safetensors  s3gen.pt  grapheme_mtl_merged_expanded_v1.json
                  Cangjie5_TC.json  conds.pt   (ve.pt and s3gen.pt are torch.save'd state dicts)

The published ResembleAI/chatterbox holds the standard and the multilingual files side by side (one
conds.pt for both); tests/support/families.py puts the two builds into one snapshot that way.

- Full size, because the loaders build their modules from fixed configs and load strictly: T3 is
  the 30-layer Llama (532M) or GPT-2 medium (479M with its unused `wte`), S3Gen 264M/266M.
  Floating weights are saved in bfloat16 (the loaders copy them into float32 parameters), buffers
  as they are: ~1.5 GB per checkpoint. The modules are rounded to bfloat16 in memory first, so the
  conds.pt computed here matches the weights that get loaded.
- Tokenizers are made here, since the real ones cannot be downloaded. Multilingual: a character
  vocabulary of 2454 ids (T3's multilingual text table) holding the 23 language tokens ([en], [de],
  ...), the scripts of those languages after NFKD (Latin, Greek, Cyrillic, Hebrew, Arabic,
  Devanagari, kana, Hangul jamo), Cangjie's [cj_a]..[cj_z] and [cj_.], then two-letter merges; and a
  small Cangjie5_TC.json for a few Chinese characters. Standard: a character-level
  BPE under 704 ids with the ids T3's config uses ([STOP]=0, [START]=255) and the special tokens
  EnTokenizer expects ([UNK], [SPACE], ...). Turbo: a byte-level BPE of GPT-2's size (256 byte
  symbols, 50,000 merges of two symbols, <|endoftext|> = 50256) plus Turbo's 19 bracketed tags
  as added tokens, 50,276 in all as the loader checks; saved by transformers' own save_pretrained.
- conds.pt (the preset voice) is made by the package's own `prepare_conditionals()` on a synthetic
  6 s voice-like wav, and saved with `Conditionals.save()`.

The deliberate edit, so that an unpatched `generate()` ends by itself: a random T3 never samples
its stop token (6562), and upstream then runs 1000 tokens (7 minutes on 2 CPU cores). The edit
rests on one property of these models: an input embedding goes through the residual
stream to the final norm, so one channel set to a large value (100, where embedding channels are
N(0, 1)) dominates the normalised hidden state (~30 in that channel, under 1 elsewhere), and a
weight of 1 in a speech-head row reading that channel puts that token's logit ~30 above all others.
- standard and multilingual: T3's speech positions count from the first speech token (`speech_pos_emb`). Row N of
  that table gets the large channel C and the stop token's row of the speech head reads C: every
  generation stops after exactly N speech tokens, whatever the text and voice. The tokens before
  it are sampled from the random model as upstream samples them. (Two weights changed.)
  Multilingual's decode loop has a hallucination guard that holds the stop token back while the
  attention has not reached the end of the text (random attention rarely does), and forces it when a
  token repeats. There every row from N on carries the channel, the stop row reads it, and so does
  one speech token's row (`REPEAT_TOKEN`, a little less): when the guard holds the stop token back,
  that token is drawn, twice, and the guard ends the speech. N to N+3 tokens. (Three weights and
  the rows' channel changed.)
- turbo: GPT-2's positions are absolute (speaker, reference prompt of 125-375 tokens depending on
  the reference's length, text, then speech), so a position cannot say "N tokens of speech". A
  chain does: the speech-start token's embedding gets channel 0, token a1's head row reads it;
  a1's embedding gets channel 1, a2's row reads it; ... aN's embedding gets channel N, and the
  stop row reads it. Every generation is a1..aN then stop, whatever the text and voice (2N+2
  weights changed; the tokens are fixed, the S3Gen audio from them is the random model's).
Everything else is random.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

KINDS = ("standard", "turbo", "multilingual")
FILES = {
    "standard": ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt"),
    "turbo": ("ve.safetensors", "t3_turbo_v1.safetensors", "s3gen_meanflow.safetensors", "conds.pt",
              "tokenizer.json", "tokenizer_config.json"),
    "multilingual": ("ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", "grapheme_mtl_merged_expanded_v1.json",
                     "Cangjie5_TC.json", "conds.pt"),
}
# the multilingual model's language tokens (chatterbox.mtl_tts.SUPPORTED_LANGUAGES)
MTL_LANGUAGES = ("ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja", "ko", "ms", "nl", "no",
                 "pl", "pt", "ru", "sv", "sw", "tr", "zh")
REPEAT_TOKEN = 1234  # multilingual: the speech token drawn while the guard holds the stop token back
BUILD_VERSION = 1  # bump when the output changes, so cached checkpoints are rebuilt
STOP_AFTER = 24  # speech tokens before the stop token (about 1 s of audio at 25 tokens/s)
STOP_CHANNEL = 7  # standard: the position table's channel the stop row reads
BIG = 100.0  # the large channel value; ordinary embedding channels are N(0, 1)
READ = 1.0  # the speech-head weight that reads it
TURBO_TAGS = ("[clear throat]", "[sigh]", "[shush]", "[cough]", "[groan]", "[sniff]", "[gasp]", "[chuckle]",
              "[laugh]", "[angry]", "[fear]", "[surprised]", "[whispering]", "[advertisement]", "[dramatic]",
              "[narration]", "[crying]", "[happy]", "[sarcastic]")
GPT2_BASE_VOCAB = 50257
TURBO_VOCAB = 50276


def complete(out_dir: Path, kind: str, stop_after: int = STOP_AFTER, seed: int = 0) -> bool:
    """Whether `out_dir` holds a finished build of these arguments (a cache may keep it)."""
    try:
        info = json.loads((out_dir / "build.json").read_text())
    except (OSError, ValueError):
        return False
    wanted = {"kind": kind, "version": BUILD_VERSION, "stop_after": stop_after, "seed": seed}
    return all(info.get(k) == v for k, v in wanted.items()) and all((out_dir / f).exists() for f in FILES[kind])


def build(kind: str, out_dir: str | Path, seed: int = 0, stop_after: int = STOP_AFTER) -> Path:
    import torch

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched (MTLTokenizer would try for Cangjie's table)
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.perf_counter()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            builder = {"standard": _build_standard, "turbo": _build_turbo, "multilingual": _build_multilingual}[kind]
            model = builder(staging, stop_after, seed)
            _save_conds(model, staging, seed)
        size = sum(f.stat().st_size for f in staging.iterdir())
        (staging / "build.json").write_text(json.dumps({
            "kind": kind, "version": BUILD_VERSION, "seed": seed, "stop_after": stop_after,
            "seconds": round(time.perf_counter() - started, 1), "bytes": size,
        }, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _build_standard(out: Path, stop_after: int, seed: int):
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.tts import ChatterboxTTS

    ve = _voice_encoder(out)
    t3 = T3()  # T3Config.english_only(): the config from_local builds
    _round(t3)
    # the stop edit: speech position N carries channel C; the stop row reads it
    t3.speech_pos_emb.emb.weight[stop_after, STOP_CHANNEL] = BIG
    t3.speech_head.weight[t3.hp.stop_speech_token, STOP_CHANNEL] = READ
    _save(t3, out / "t3_cfg.safetensors")
    s3gen = S3Gen()
    _round(s3gen)
    _save(s3gen, out / "s3gen.safetensors")
    _standard_tokenizer(out / "tokenizer.json", t3.hp)
    tokenizer = EnTokenizer(str(out / "tokenizer.json"))
    return ChatterboxTTS(t3.eval(), s3gen.eval(), ve, tokenizer, "cpu")


def _build_turbo(out: Path, stop_after: int, seed: int):
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    ve = _voice_encoder(out)
    hp = T3Config(text_tokens_dict_size=TURBO_VOCAB)  # the turbo config, as from_local sets it up
    hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    t3 = T3(hp)
    _round(t3)
    _chain(t3, stop_after, seed)
    _save(t3, out / "t3_turbo_v1.safetensors")
    del t3.tfmr.wte  # as from_local does after loading
    s3gen = S3Gen(meanflow=True)
    _round(s3gen)
    _save(s3gen, out / "s3gen_meanflow.safetensors")
    tokenizer = _turbo_tokenizer(out)
    return ChatterboxTurboTTS(t3.eval(), s3gen.eval(), ve, tokenizer, "cpu")


def _build_multilingual(out: Path, stop_after: int, seed: int):
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.tokenizers import MTLTokenizer
    from chatterbox.models.tokenizers.tokenizer import ChineseCangjieConverter
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS

    ve = VoiceEncoder()
    _round(ve)
    torch.save(_state(ve), out / "ve.pt")
    t3 = T3(T3Config.multilingual())
    _round(t3)
    # the stop edit, held from position N on (see the docstring: the hallucination guard)
    t3.speech_pos_emb.emb.weight[stop_after:, STOP_CHANNEL] = BIG
    t3.speech_head.weight[t3.hp.stop_speech_token, STOP_CHANNEL] = READ
    t3.speech_head.weight[REPEAT_TOKEN, STOP_CHANNEL] = 0.9 * READ
    _save(t3, out / "t3_mtl23ls_v2.safetensors")
    s3gen = S3Gen()
    _round(s3gen)
    torch.save(_state(s3gen), out / "s3gen.pt")
    _multilingual_tokenizer(out / "grapheme_mtl_merged_expanded_v1.json", t3.hp)
    _cangjie(out / "Cangjie5_TC.json")
    # pkuseg fetches its model from GitHub when made; conds.pt needs no tokenizer, so none is made
    ChineseCangjieConverter._init_segmenter = lambda self: setattr(self, "segmenter", None)
    tokenizer = MTLTokenizer(str(out / "grapheme_mtl_merged_expanded_v1.json"))
    return ChatterboxMultilingualTTS(t3.eval(), s3gen.eval(), ve.eval(), tokenizer, "cpu")


def _chain(t3, stop_after: int, seed: int) -> list[int]:
    """The turbo stop edit: start -> a1 -> ... -> aN -> stop, each link one channel (see the docstring)."""
    import torch

    speech_tokens = 6561  # S3 tokens 0..6560; 6561 start, 6562 stop
    chain = torch.randperm(speech_tokens, generator=torch.Generator().manual_seed(seed))[:stop_after].tolist()
    previous = t3.hp.start_speech_token
    for channel, token in enumerate([*chain, t3.hp.stop_speech_token]):
        t3.speech_emb.weight[previous, channel] = BIG
        t3.speech_head.weight[token, channel] = READ
        previous = token
    return chain


def _voice_encoder(out: Path):
    from chatterbox.models.voice_encoder import VoiceEncoder

    ve = VoiceEncoder()
    _round(ve)
    _save(ve, out / "ve.safetensors")
    return ve.eval()


def _round(module) -> None:
    """Parameters rounded to bfloat16 values, as they will be loaded back (buffers stay as they are)."""
    import torch

    for param in module.parameters():
        if param.is_floating_point():
            param.copy_(param.to(torch.bfloat16).to(param.dtype))


def _save(module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(_state(module), str(path))


def _state(module) -> dict:
    """The state dict as saved: floating parameters in bfloat16, buffers as they are, nothing shared."""
    import torch

    buffers = {name for name, _ in module.named_buffers()}
    state = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().contiguous()
        if tensor.is_floating_point() and name not in buffers:
            tensor = tensor.to(torch.bfloat16)
        state[name] = tensor.clone()  # tied or shared storage is saved as separate tensors
    return state


def _standard_tokenizer(path: Path, hp) -> None:
    """A character BPE in EnTokenizer's shape: special ids where T3's config expects them."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    specials = {"[STOP]": hp.stop_text_token, "[START]": hp.start_text_token}
    vocab: dict[str, int] = dict(specials)
    ids = (i for i in range(hp.text_tokens_dict_size) if i not in specials.values())
    for token in ("[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"):
        vocab[token] = next(ids)
    for code in range(33, 127):  # printable ASCII, one symbol each
        vocab[chr(code)] = next(ids)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    merges = []
    for first in letters:  # two-letter merges fill the rest, up to the 704-id vocabulary
        for second in letters:
            token = first + second
            try:
                vocab[token] = next(ids)
            except StopIteration:
                break
            merges.append((first, second))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("[SPACE]", behavior="isolated")
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in
                                  ("[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]")])
    tokenizer.save(str(path))


def _multilingual_tokenizer(path: Path, hp) -> None:
    """MTLTokenizer's vocabulary shape: characters of the 23 languages after NFKD, language and Cangjie tokens."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    specials = {"[STOP]": hp.stop_text_token, "[START]": hp.start_text_token}
    vocab: dict[str, int] = dict(specials)
    ids = (i for i in range(hp.text_tokens_dict_size) if i not in specials.values())
    named = ["[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]", *(f"[{code}]" for code in MTL_LANGUAGES),
             *(f"[cj_{c}]" for c in "abcdefghijklmnopqrstuvwxyz."), "[cj_]"]
    for token in named:
        vocab[token] = next(ids)
    scripts = [range(33, 127), range(0x300, 0x370), range(0x391, 0x3CA), range(0x410, 0x450), range(0x5B0, 0x5EB),
               range(0x621, 0x656), range(0x900, 0x97F), range(0x3041, 0x3097), range(0x30A1, 0x30FB),
               range(0x1100, 0x1113), range(0x1161, 0x1176), range(0x11A8, 0x11C3), (0xA1, 0xBF, 0xDF, 0x3001, 0x3002)]
    for code in (c for block in scripts for c in block):
        vocab.setdefault(chr(code), next(ids))
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    merges = []
    for first in letters:
        for second in letters:
            if len(vocab) >= hp.text_tokens_dict_size:
                break
            vocab[first + second] = next(ids)
            merges.append((first, second))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("[SPACE]", behavior="isolated")
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in named[:6] + ["[START]", "[STOP]"]])
    tokenizer.add_tokens([AddedToken(t, normalized=False) for t in named[6:]])
    tokenizer.save(str(path))


def _cangjie(path: Path) -> None:
    """Cangjie codes ("glyph\tcode" lines) for a few common characters, as Cangjie5_TC.json lists them."""
    entries = {"你": "onf", "好": "vnd", "我": "hqi", "是": "amyo", "的": "hapi", "中": "l", "文": "yk", "人": "o"}
    path.write_text(json.dumps([f"{glyph}\t{code}" for glyph, code in entries.items()], ensure_ascii=False))


def _turbo_tokenizer(out: Path):
    """A byte-level BPE of GPT-2's size, Turbo's tags added, saved as transformers 5 saves it."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import GPT2TokenizerFast

    symbols = list(pre_tokenizers.ByteLevel.alphabet())
    order = sorted(symbols, key=lambda s: (not s.isalpha() or not s.isascii(), s != "Ġ", s))  # letters first
    vocab = {s: i for i, s in enumerate(sorted(symbols))}
    merges = []
    for first in order:
        for second in order:
            if len(vocab) >= GPT2_BASE_VOCAB - 1:
                break
            vocab[first + second] = len(vocab)
            merges.append((first, second))
    vocab["<|endoftext|>"] = GPT2_BASE_VOCAB - 1
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    tokenizer = GPT2TokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>", model_max_length=8196)
    tokenizer.add_tokens([AddedToken(tag, normalized=False) for tag in TURBO_TAGS])
    assert len(tokenizer) == TURBO_VOCAB, len(tokenizer)
    tokenizer.save_pretrained(str(out))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _save_conds(model, out: Path, seed: int) -> None:
    """The preset voice: the package's own prepare_conditionals on a 6 s voice-like wav."""
    import numpy as np
    import soundfile as sf

    rate = 24000
    rng = np.random.default_rng(seed)
    t = np.arange(6 * rate) / rate
    pitch = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)  # a gliding voiced tone with syllable-like bursts
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    wav = (0.2 * voiced * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    path = out / "reference.partial.wav"
    sf.write(path, wav, rate)
    try:
        model.prepare_conditionals(str(path))
    finally:
        path.unlink()
    model.conds.save(out / "conds.pt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-after", type=int, default=STOP_AFTER)
    args = parser.parse_args(argv)
    out = build(args.kind, args.out_dir, seed=args.seed, stop_after=args.stop_after)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
