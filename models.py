"""Layer-wise activations of HuggingFace language models, read the way Brain-Score reads them.

For stimulus i of a context group (passage, story) the model sees the group's texts up to and
including i, joined by single spaces (no space before .,!?;:, empty parts dropped), truncated on
the left to the model's maximum length. The representation is the last token of every layer's
output: the embeddings, then every block (T5: encoder embeddings + blocks, then decoder embeddings
+ blocks), as Brain-Score's forward hooks on the blocks read them (before any final norm); LLaMA
blocks at their post_attention_layernorm, as the authors' registrations read them (readout "paper").
Models run in float32 (the authors loaded them without a torch_dtype); token_type_ids are dropped,
as the authors' fork drops them. Every cache entry is keyed by provenance(): the weights (hub
commit, or a local folder's path and file fingerprint), dtype, readout and format.
Decoder-only models run each group once and gather the last token of every stimulus: under causal
attention this is the same computation as one pass per prefix. T5 and BERT-like encoders see the
whole prefix, so they run one pass per prefix, batched. MODELS holds the paper's 25 models and the
GPT-2 appendix pairs; any hub id or local directory also works.

Wehbe2014 reads words the way Toneva & Wehbe do instead (extract_words: the mean over a word's tokens);
Futrell2018 needs each word's surprisal (surprisal: the model with its LM head, as Brain-Score 2023).
Leaves out: scoring (brainalign.py), datasets (data.py), generation, quantisation.
Run: python -c "import models; print(models.extract('gpt2', ['Hi there.', 'Bye.'], ['a', 'a']).shape)"
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm

log = logging.getLogger(__name__)
CACHE_FORMAT = "brainalign-activations-v2"  # bump when the extraction semantics change


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ModelInfo:
    name: str              # short name, registry key, e.g. "flan-t5-small"
    hub_id: str            # loads with transformers (for delta releases: the delta)
    family: str            # "t5" | "llama" | "gpt2" ("" for an ad-hoc hub id, known once loaded)
    params: float          # parameter count as the paper gives it (nan when unknown)
    n_layers: int          # the paper's layer count (T5: encoder + decoder blocks)
    base: str | None       # short name of the vanilla model it was tuned from; None for vanilla models
    note: str = ""         # substitutes, deltas, provenance
    delta_base: str | None = None   # hub id of the weights a delta release is added to
    appendix: bool = False          # outside the paper's 25: the GPT-2 appendix pairs, Stanford's Alpaca
    paper: tuple[float, float, float, float] | None = None  # Table 5: Pereira, Blank, Wehbe, Average
    #   (GPT-2 appendix models: the paper gives only the average; the other three are nan)
    nwp_loss: float | None = None   # Table 7
    mmlu: float | None = None       # Table 7
    bbh: float | None = None        # Table 7
    paper_futrell: float | None = None  # Table 9: Futrell2018 reading times (Pearson r with surprisal)


# Table 5 (Pereira, Blank, Wehbe, Average) and Table 7 (next-word loss, MMLU, BBH; tuned models only).
# GPT-2 appendix pairs: the paper gives only the average, so the other three are nan.
_TABLE = """
t5-small            t5    google/t5-v1_1-small                77e6  16 -           .166 .168 .071 .135
flan-t5-small       t5    google/flan-t5-small                77e6  16 t5-small    .202 .178 .079 .153  .851 .294 .287
t5-base             t5    google/t5-v1_1-base                 250e6 24 -           .222 .188 .074 .162
flan-t5-base        t5    google/flan-t5-base                 250e6 24 t5-base     .234 .178 .076 .163 1.235 .341 .308
flan-alpaca-base    t5    declare-lab/flan-alpaca-base        250e6 24 t5-base     .227 .179 .076 .161 1.074 .304 .266
t5-large            t5    google/t5-v1_1-large                800e6 48 -           .270 .082 .071 .141
flan-t5-large       t5    google/flan-t5-large                800e6 48 t5-large    .311 .104 .080 .165  .625 .419 .370
flan-alpaca-large   t5    declare-lab/flan-alpaca-large       800e6 48 t5-large    .322 .126 .082 .177  .648 .397 .276
t5-xl               t5    google/t5-v1_1-xl                   3e9   48 -           .285 .192 .072 .183
flan-t5-xl          t5    google/flan-t5-xl                   3e9   48 t5-xl       .314 .215 .072 .200  .650 .493 .402
flan-alpaca-xl      t5    declare-lab/flan-alpaca-xl          3e9   48 t5-xl       .312 .209 .075 .199  .604 .466 .270
flan-gpt4all-xl     t5    declare-lab/flan-gpt4all-xl         3e9   48 t5-xl       .300 .206 .078 .195  .625 .337 .212
flan-sharegpt-xl    t5    declare-lab/flan-sharegpt-xl        3e9   48 t5-xl       .323 .211 .070 .201  .664 .446 .363
flan-alpaca-gpt4-xl t5    declare-lab/flan-alpaca-gpt4-xl     3e9   48 t5-xl       .302 .205 .073 .193  .593 .456 .348
t5-xxl              t5    google/t5-v1_1-xxl                  11e9  48 -           .343 .297 .096 .246
flan-t5-xxl         t5    google/flan-t5-xxl                  11e9  48 t5-xxl      .350 .268 .103 .240  .638 .545 .443
flan-alpaca-xxl     t5    declare-lab/flan-alpaca-xxl         11e9  48 t5-xxl      .346 .268 .102 .239  .607 .508 .229
llama-7b            llama huggyllama/llama-7b                 7e9   32 -           .405 .154 .118 .226
alpaca-7b           llama chavinlo/alpaca-native              7e9   32 llama-7b    .420 .167 .118 .235 4.201 .404 .328
vicuna-7b           llama lmsys/vicuna-7b-v1.3                7e9   32 llama-7b    .399 .152 .119 .223 4.387 .472 .331
llama-13b           llama huggyllama/llama-13b                13e9  40 -           .412 .133 .115 .220
vicuna-13b          llama lmsys/vicuna-13b-v1.3               13e9  40 llama-13b   .423 .148 .116 .229 4.130 .521 .387
stable-vicuna-13b   llama CarperAI/stable-vicuna-13b-delta    13e9  40 llama-13b   .415 .144 .115 .225 4.623 .495 .380
llama-33b           llama huggyllama/llama-30b                33e9  60 -           .426 .145 .109 .227
vicuna-33b          llama lmsys/vicuna-33b-v1.3               33e9  60 llama-33b   .436 .156 .105 .232 3.940 .590 .426
gpt2                gpt2  openai-community/gpt2               124e6 12 -           nan  nan  nan  .172
gpt2-alpaca         gpt2  vicgalle/gpt2-alpaca                124e6 12 gpt2        nan  nan  nan  .167
gpt2-medium         gpt2  openai-community/gpt2-medium        355e6 24 -           nan  nan  nan  .166
gpt2-medium-alpaca  gpt2  linkanjarad/GPT2-Medium-Alpaca-355m 355e6 24 gpt2-medium nan  nan  nan  .165
gpt2-large          gpt2  openai-community/gpt2-large         774e6 36 -           nan  nan  nan  .173
gpt2-large-alpaca   gpt2  reasonwang/gpt2-large-alpaca        774e6 36 gpt2-large  nan  nan  nan  .170
gpt2-xl             gpt2  openai-community/gpt2-xl            1.5e9 48 -           nan  nan  nan  .200
gpt2-xl-alpaca      gpt2  Rachneet/gpt2-xl-alpaca             1.5e9 48 gpt2-xl     nan  nan  nan  .192
alpaca-7b-stanford  llama tatsu-lab/alpaca-7b-wdiff           7e9   32 llama-7b    nan  nan  nan  nan
"""
_LLAMA = ("Meta's original LLaMA-1 weights, converted to transformers and re-uploaded by the community "
          "(Meta never put LLaMA-1 on the hub)")
_NOTES = {"llama-7b": _LLAMA, "llama-13b": _LLAMA, "llama-33b": _LLAMA + "; Meta named it LLaMA-30B (32.5B parameters)",
          # PR #194 (brain-score/language 91c88b1) models/llama/__init__.py registers alpaca-7b as this model
          "alpaca-7b": "chavinlo/alpaca-native: a community replication of Stanford Alpaca, as the authors ran it",
          "alpaca-7b-stanford": "Stanford's own weight diff on LLaMA-7B, merge_delta() adds it to "
                                "huggyllama/llama-7b; not the model the paper scored",
          "stable-vicuna-13b": "CarperAI's delta on LLaMA-13B; merge_delta() adds it to huggyllama/llama-13b"}
_DELTA_BASES = {"alpaca-7b-stanford": "huggyllama/llama-7b", "stable-vicuna-13b": "huggyllama/llama-13b"}
# Table 9: behavioural alignment on Futrell2018 (the paper's 25 models; none for the GPT-2 appendix)
_TABLE9 = {"t5-small": .229, "flan-t5-small": .054, "t5-base": .333, "flan-t5-base": .152,
           "flan-alpaca-base": .290, "t5-large": .303, "flan-t5-large": .145, "flan-alpaca-large": .291,
           "t5-xl": .225, "flan-t5-xl": .113, "flan-alpaca-xl": .181, "flan-gpt4all-xl": .251,
           "flan-sharegpt-xl": .285, "flan-alpaca-gpt4-xl": .250, "t5-xxl": .260, "flan-t5-xxl": .274,
           "flan-alpaca-xxl": .267, "llama-7b": .204, "alpaca-7b": .206, "vicuna-7b": .205,
           "llama-13b": .184, "vicuna-13b": .184, "stable-vicuna-13b": .196, "llama-33b": .158,
           "vicuna-33b": .164}


def _row(line: str) -> ModelInfo:
    name, family, hub_id, params, n_layers, base, *values = line.split()
    v = [float(x) for x in values] + [None] * (7 - len(values))
    appendix = family == "gpt2" or name == "alpaca-7b-stanford"
    return ModelInfo(name, hub_id, family, float(params), int(n_layers), None if base == "-" else base,
                     note=_NOTES.get(name, "appendix: the paper gives only the average" if appendix else ""),
                     delta_base=_DELTA_BASES.get(name), appendix=appendix, paper=tuple(v[:4]),
                     nwp_loss=v[4], mmlu=v[5], bbh=v[6], paper_futrell=_TABLE9.get(name))


MODELS: dict[str, ModelInfo] = {m.name: m for m in map(_row, _TABLE.strip().splitlines())}


def resolve(name: str) -> ModelInfo:
    """A registry key, a local model directory, or any hub id ("owner/name") -> ModelInfo. A local
    directory is named after its folder (`.` -> the current folder's name; its absolute path where
    that name is a registry key) and keeps its absolute path."""
    if name in MODELS:
        return MODELS[name]
    path = Path(name).expanduser()
    if path.is_dir():
        path = path.resolve()
        cfg = _read_config(path)
        n = _count(cfg, "num_hidden_layers") or _count(cfg, "n_layer") or _count(cfg, "num_layers")
        n += _count(cfg, "num_decoder_layers")
        name = path.name if path.name and path.name not in MODELS else str(path)   # never a registry key
        return ModelInfo(name, str(path), str(cfg.get("model_type", "")), float("nan"), n, None,
                         note="local directory")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return ModelInfo(name, name, "", float("nan"), 0, None, note="hub id, not in the registry")
    raise ValueError(f"unknown model {name!r}. Registry: {', '.join(MODELS)}. "
                     "Any hub id (owner/name) or local model directory also works.")


def _read_config(path: Path) -> dict:
    if not (path / "config.json").is_file():
        return {}
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (ValueError, OSError) as err:
        raise ValueError(f"{path / 'config.json'} is not valid JSON ({err}); restore it from the model's "
                         "release or write it again with model.save_pretrained(DIR)") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path / 'config.json'} must hold a JSON object, got {type(cfg).__name__}")
    return cfg


def _count(cfg: dict, key: str) -> int:
    try:
        return int(cfg.get(key) or 0)
    except (TypeError, ValueError):
        raise ValueError(f"config.json: {key} must be a whole number, got {cfg[key]!r}") from None


# --------------------------------------------------------------------------- contexts
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")


def prepare_context(parts: list[str]) -> str:
    """Brain-Score's context: parts joined by single spaces, empty parts dropped, no space before .,!?;:"""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(p for p in parts if p.strip()))


def _contexts(texts, groups, window):
    """-> contexts (n_stimuli,) and chains: stimuli whose contexts start at the same text, in order."""
    members = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    contexts, chains = [""] * len(texts), defaultdict(list)
    for g, idx in members.items():
        for pos, i in enumerate(idx):
            start = max(0, pos - window + 1) if window else 0
            contexts[i] = prepare_context([texts[j] for j in idx[start:pos + 1]])
            chains[(g, start)].append(i)
    return contexts, list(chains.values())


def _plan(tok, kind, contexts, chains, max_len, one_pass=True):
    """-> jobs [(token ids, [(stimulus, position), ...])]: one forward sequence each, and where to read it.
    Causal models: one sequence per chain, read at the last token of every stimulus whose own tokens
    are a prefix of it; the others (tokenisation differs there, or longer than max_len) run alone."""
    jobs, alone = [], []
    for chain in chains:
        if kind != "causal" or not one_pass or len(chain) == 1:
            alone += chain
            continue
        full, reads = tok(contexts[chain[-1]], verbose=False)["input_ids"][:max_len], []
        for s in range(0, len(chain), 256):  # a few prefixes at a time: a long group's prefixes are O(n^2)
            ids = tok([contexts[i] for i in chain[s:s + 256]], verbose=False)["input_ids"]  # untruncated
            reads += [(i, len(x) - 1) for i, x in zip(chain[s:s + 256], ids) if 0 < len(x) <= len(full)
                      and x == full[:len(x)]]
        if reads:
            jobs.append((full[:max(p for _, p in reads) + 1], reads))
        done = {i for i, _ in reads}
        alone += [i for i in chain if i not in done]
    if alone:
        ids = tok([contexts[i] for i in alone], truncation=True, max_length=max_len)["input_ids"]
        jobs += [(x, [(i, len(x) - 1)]) for i, x in zip(alone, ids)]
    for x, reads in jobs:
        if not x:
            raise ValueError(f"stimulus {reads[0][0]} tokenizes to nothing: {contexts[reads[0][0]]!r}")
    return jobs


# --------------------------------------------------------------------------- loading
_ENCODERS = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "xlm-roberta", "mpnet"}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DTYPE_KW = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"


def _kind(config) -> str:
    """'seq2seq' (T5), 'encoder' (BERT-like, bidirectional) or 'causal' (decoder-only)."""
    return "seq2seq" if config.is_encoder_decoder else "encoder" if config.model_type in _ENCODERS else "causal"


def check_device(device: str) -> str:
    """The torch device for a --device value, or a ValueError that says what to use instead."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if device not in ("cpu", "mps", "map") and not re.fullmatch(r"cuda(:\d+)?", device):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N, mps, "
                         "or map (device_map='auto' over all GPUs, needs accelerate)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for but Apple's MPS backend is not available here (it exists "
                         "only on macOS with Apple silicon): use device='auto' or 'cpu'")
    if device not in ("cpu", "mps") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available here: use device='auto' or 'cpu'")
    if device == "map" and not importlib.util.find_spec("accelerate"):
        raise ValueError("device 'map' (device_map='auto') needs accelerate: pip install accelerate")
    return device


def _fetch_help(source: str, err: Exception) -> str:
    if Path(source).exists():
        todo = (f"the directory {source} must hold config.json, the tokenizer files and the weights "
                "(model.safetensors or pytorch_model.bin), as save_pretrained writes them.")
    else:
        todo = (f"check the name at https://huggingface.co/{source}; for a gated model accept its licence there "
                "and run `hf auth login` (formerly `huggingface-cli login`) or set HF_TOKEN; without internet, "
                "download it elsewhere and pass --model-dir DIR (or the local path as the model name), or set "
                "HF_HUB_OFFLINE=1 to use what is already in the HuggingFace cache.")
    return f"could not load {source!r}: {type(err).__name__}: {err}\nWhat to do: {todo}"


def merge_delta(base: str, delta: str, out_dir: str | Path, revision: str | None = None) -> Path:
    """Recover full weights from a weight-difference release: every tensor = base + delta.
    Vocabulary rows the delta adds (Alpaca's and StableVicuna's [PAD]) start from the mean of the base
    rows (Stanford Alpaca's recovery recipe; extraction never reads them). Sums in float32, stored in
    the delta's dtype. Written once to out_dir through a temporary folder and a rename, reused
    afterwards; when another job finishes the same merge first, its result is used and ours dropped.
    The temporary folder is removed whatever happens (error, Ctrl-C)."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer
    log.warning("merging %s + %s into %s (once)", base, delta, out_dir)
    try:
        b = AutoModelForCausalLM.from_pretrained(base, **{_DTYPE_KW: "auto"})
        d = AutoModelForCausalLM.from_pretrained(delta, revision=revision, **{_DTYPE_KW: "auto"})
        tok = AutoTokenizer.from_pretrained(delta, revision=revision)  # both deltas ship their tokenizer
    except Exception as err:
        raise OSError(_fetch_help(f"{base} + {delta}", err)) from err
    bs = b.state_dict()
    with torch.no_grad():
        for name, p in d.state_dict().items():
            q = bs[name].float()
            if q.shape != p.shape:  # rows added to the vocabulary
                q = torch.cat([q, q.mean(0, keepdim=True).expand(p.shape[0] - q.shape[0], *q.shape[1:])])
            p.copy_((p.float() + q).to(p.dtype))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
    try:
        d.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.replace(tmp, out_dir)           # atomic; fails if another job's merge is already there
        except OSError:
            if not (out_dir / "config.json").exists():
                raise
            log.warning("another job finished merging %s first: using its result", out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


@contextmanager
def _quiet(progress: bool):
    """Mute transformers' load report (AutoModel drops the LM head on purpose) and, unless progress, its bars."""
    hf = transformers.utils.logging
    level, bars = hf.get_verbosity(), hf.is_progress_bar_enabled()
    hf.set_verbosity_error()
    hf.enable_progress_bar() if progress and bars else hf.disable_progress_bar()
    try:
        yield
    finally:
        hf.set_verbosity(level)
        hf.enable_progress_bar() if bars else hf.disable_progress_bar()


def _source(info: ModelInfo, revision, model_dir, cache_dir) -> tuple[str, dict]:
    """-> (what from_pretrained loads, its keyword arguments). Delta releases are merged first (once)."""
    if model_dir:
        return str(Path(model_dir).expanduser().resolve()), {}
    if info.delta_base:
        merged = Path(cache_dir or Path.home() / ".cache" / "brainalign", "merged", info.name, revision or "main")
        return str(merge_delta(info.delta_base, info.hub_id, merged, revision)), {}
    return info.hub_id, {"revision": revision} if revision else {}


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "spiece.model",
                    "tokenizer.model", "sentencepiece.bpe.model")


def _load(info: ModelInfo, revision, model_dir, device: str, dtype: str, cache_dir, progress=True):
    """-> (tokenizer, model in eval mode, config)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    with _quiet(progress):
        source, kw = _source(info, revision, model_dir, cache_dir)
        if Path(source).is_dir() and not any((Path(source) / f).exists() for f in _TOKENIZER_FILES):
            raise OSError(f"{source} has no tokenizer files (one of {', '.join(_TOKENIZER_FILES)}): save them "
                          "there with tokenizer.save_pretrained(DIR), or copy them from the model's hub page")
        try:
            config = AutoConfig.from_pretrained(source, **kw)
            load = {_DTYPE_KW: _DTYPES[dtype]}
            if _needs_map(info, load[_DTYPE_KW], device):
                load["device_map"] = "auto"
            tok = AutoTokenizer.from_pretrained(source, **kw)
            model = AutoModel.from_pretrained(source, **kw, **load)
        except Exception as err:
            raise OSError(_fetch_help(source, err)) from err
    if "device_map" not in load:
        model.to(device)
    tok.truncation_side = "left"
    return tok, model.eval(), config


def _needs_map(info, dtype, device) -> bool:
    """device_map='auto': asked for (device 'map'), or the registry's parameter count does not fit the GPU."""
    if device == "map":
        return True
    if not device.startswith("cuda") or math.isnan(info.params) or not importlib.util.find_spec("accelerate"):
        return False
    gpu = torch.cuda.get_device_properties(torch.device(device).index or 0)
    return info.params * torch.finfo(dtype).bits / 8 * 1.2 > gpu.total_memory


def _max_length(tok, config) -> int:
    """Brain-Score truncates to the tokenizer's model_max_length; the position table (T5 has none) caps it."""
    positions = None if _kind(config) == "seq2seq" else (
        getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None))
    limits = [int(x) for x in (tok.model_max_length, positions) if isinstance(x, (int, float)) and 0 < x < 1e7]
    return min(limits) if limits else 10 ** 9


# --------------------------------------------------------------------------- layers and readout
READOUTS = ("paper", "block")   # paper: what the authors' code read; block: every block's output


def _stacks(config) -> list[tuple[str, int]]:
    """-> [(stack name, number of blocks)]: one stack, or encoder and decoder for seq2seq."""
    if _kind(config) != "seq2seq":
        return [("", config.num_hidden_layers)]
    return [("encoder", config.num_hidden_layers),
            ("decoder", getattr(config, "num_decoder_layers", None) or config.decoder_layers)]


def _post_attention_norm(config, readout: str) -> bool:
    """Read a block's post_attention_layernorm output instead of the block's output?
    PR #194 (brain-score/language 91c88b1, models/llama/__init__.py) registers LLaMA, Alpaca and Vicuna
    at `model.layers.N.post_attention_layernorm`: the residual stream after attention, normalised,
    before the MLP. T5 (`encoder.block.N`, `decoder.block.N`, 8ace8f3 models/t5) and GPT-2
    (`transformer.h.N`) are read at the block output there too, so only the llama family differs."""
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}: use {' or '.join(READOUTS)}")
    return readout == "paper" and config.model_type == "llama"


def _layer_names(config, readout: str) -> list[str]:
    suffix = ".post_attention_layernorm" if _post_attention_norm(config, readout) else ""
    return [f"{name}.{x}".lstrip(".") for name, n in _stacks(config)
            for x in ["embeddings"] + [f"block.{j}{suffix}" for j in range(n)]]


def _blocks(model, config) -> list[torch.nn.ModuleList]:
    """The ModuleList of blocks of each stack (the first ModuleList of the right length)."""
    found = []
    for name, n in _stacks(config):
        module = getattr(model, f"get_{name}")() if name else model
        lists = [m for m in module.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
        if not lists:
            raise RuntimeError(f"cannot find the {n} blocks of {type(module).__name__}")
        found.append(lists[0])
    return found


def _config(source: str, kw: dict):
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(source, **kw)
    except Exception as err:
        raise OSError(_fetch_help(source, err)) from err


def layer_names(model: str, model_dir: str | Path | None = None, revision: str | None = None,
                readout: str = "paper") -> list[str]:
    """Names of extract()'s output layers, in order (reads the model's config only). A layer whose name
    ends in "embeddings" is the input to the first block: recorded, but not a candidate for the best
    layer unless asked (the paper counts blocks only)."""
    source = str(model_dir or resolve(model).hub_id)
    return _layer_names(_config(source, {"revision": revision} if revision and not model_dir else {}), readout)


# --------------------------------------------------------------------------- provenance
TOKEN_TYPE_IDS = ("drop", "pass")   # drop: PR #194 91c88b1; pass: Brain-Score's default


def provenance(model: str, *, revision: str | None = None, model_dir: str | Path | None = None,
               dtype: str = "float32", readout: str = "paper", token_type_ids: str = "drop") -> dict:
    """Everything that decides a model's activations, as stored in every cache entry and score record:
    the weights (a hub id and the commit it resolved to, or a local folder's absolute path and a
    fingerprint of its files: names, sizes, modification times, and config.json's bytes), dtype,
    readout, token_type_ids and the extraction format. Reads the model's config only."""
    info = resolve(model)
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use {', '.join(_DTYPES)}")
    if token_type_ids not in TOKEN_TYPE_IDS:
        raise ValueError(f"unknown token_type_ids {token_type_ids!r}: use {' or '.join(TOKEN_TYPE_IDS)}")
    local = Path(model_dir or info.hub_id).expanduser()
    if model_dir or local.is_dir():
        local = local.resolve()
        weights = {"path": str(local), "files": _folder_fingerprint(local)}
        config = _config(str(local), {})
    else:
        config = _config(info.hub_id, {"revision": revision} if revision else {})
        weights = {"hub_id": info.hub_id, "revision": revision or "main",
                   "commit": getattr(config, "_commit_hash", None), "delta_on": info.delta_base}
    _post_attention_norm(config, readout)          # checks the readout name
    return {"format": CACHE_FORMAT, "weights": weights, "dtype": dtype, "readout": readout,
            "layers": _layer_names(config, readout), "token_type_ids": token_type_ids}


def _folder_fingerprint(path: Path) -> str:
    if not (path / "config.json").is_file():
        raise OSError(f"{path} has no config.json: a model folder holds config.json, the tokenizer files "
                      "and the weights, as save_pretrained writes them")
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        st = f.stat()
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def key_of(record: dict) -> str:
    """A short stable hash of a JSON-able dict: the cache key of what produced a result."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- running
def _batches(jobs, batch_size) -> list[list]:
    """Jobs [(token ids, ...)] sorted by length and grouped: similar lengths together, at most
    batch_size sequences and batch_size * 512 padded tokens per batch."""
    batches = [[]]
    for job in sorted(jobs, key=lambda j: len(j[0])):
        if batches[-1] and (len(batches[-1]) == batch_size or (len(batches[-1]) + 1) * len(job[0]) > batch_size * 512):
            batches.append([])
        batches[-1].append(job)
    return batches


def _run(model, config, kind, jobs, n_stimuli, batch_size, progress, desc, readout="paper",
         token_types=False) -> np.ndarray:
    """Run the jobs in length-sorted, right-padded batches; hooks copy out the rows to read.
    -> (n_stimuli, n_layers_out, hidden) float32. Only one layer's hidden states live at a time."""
    out, seen, now = None, np.zeros(n_stimuli, bool), {}
    stacks = _blocks(model, config)
    n_out = sum(len(blocks) + 1 for blocks in stacks)
    norm = _post_attention_norm(config, readout)

    def record(layer, h):  # h: (batch, seq, hidden)
        nonlocal out
        rows = h[now["row"].to(h.device), now["pos"].to(h.device)]  # (n_reads, hidden)
        if out is None:
            out = np.zeros((n_stimuli, n_out, h.shape[-1]), np.float32)
        out[now["stim"], layer] = rows.float().cpu().numpy()

    hooks, layer = [], 0
    for blocks in stacks:
        hooks.append(blocks[0].register_forward_pre_hook(
            lambda m, a, k, l=layer: record(l, a[0] if a else k["hidden_states"]), with_kwargs=True))
        for j, block in enumerate(blocks):
            hooks.append((block.post_attention_layernorm if norm else block).register_forward_hook(
                lambda m, a, o, l=layer + 1 + j: record(l, o[0] if isinstance(o, tuple) else o)))
        layer += len(blocks) + 1

    pad = getattr(config, "pad_token_id", None) or 0
    dev = model.get_input_embeddings().weight.device
    try:
        for batch in tqdm(_batches(jobs, batch_size), desc=desc, unit="batch", disable=None if progress else True):
            width = max(len(x) for x, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # right padding: never read
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, (x, _) in enumerate(batch):
                ids[r, :len(x)], mask[r, :len(x)] = torch.tensor(x), 1
            reads = [(r, p, i) for r, (_, rs) in enumerate(batch) for i, p in rs]  # (row, position, stimulus)
            now.update(row=torch.tensor([r for r, _, _ in reads]), pos=torch.tensor([p for _, p, _ in reads]),
                       stim=np.array([i for _, _, i in reads]))
            inputs = {"input_ids": ids.to(dev), "attention_mask": mask.to(dev)}
            if kind == "causal":  # right padding is invisible to causal attention: no mask, fast kernels
                del inputs["attention_mask"]
            if token_types:       # one text per sequence: the tokenizer's token_type_ids are all 0
                inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
            if kind == "seq2seq":  # the context also goes in as the decoder's input (Brain-Score PR #194)
                inputs.update(decoder_input_ids=inputs["input_ids"], decoder_attention_mask=inputs["attention_mask"])
            with torch.inference_mode():
                model(**inputs, **({} if kind == "encoder" else {"use_cache": False}))
            seen[now["stim"]] = True
    finally:
        for h in hooks:
            h.remove()
    if not seen.all():
        raise RuntimeError(f"internal error: {int((~seen).sum())} stimuli were never read")
    return out


def _passes_token_types(tok, token_type_ids: str) -> bool:
    """Brain-Score calls model(**tokenizer(context)): every input the tokenizer declares goes in, and a
    GPT-2 embeds token_type_ids with its token table, so they change every activation. The authors'
    fork drops them (PR #194, brain-score/language 91c88b1, model_helpers/huggingface.py:
    `context_tokens.pop('token_type_ids')`). Decided from model_input_names, not from what one call
    returns (transformers 5 tokenizers may not return them where 4.x did)."""
    return token_type_ids == "pass" and "token_type_ids" in tok.model_input_names


# --------------------------------------------------------------------------- cache
def _cache_path(cache_dir, name, source_key, dataset_key) -> Path:
    return Path(cache_dir, "activations", safe_name(name), source_key, f"{safe_name(dataset_key)}.npz")


def safe_name(s: str) -> str:
    """A file-name-safe form of a model or dataset name: never empty, never '.' or '..'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", s).strip("-.") or "_"


def _read_cache(path: Path, key: str) -> np.ndarray | None:
    """The cached activations if the file holds them for this key; None (recompute) otherwise. An
    unreadable file (truncated, empty, not an .npz) is moved aside to <name>.corrupt with a warning."""
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            if str(f["fingerprint"]) == key:
                return f["activations"]
        log.warning("stale activation cache %s (texts, groups, window or weights changed): recomputing", path)
    except Exception as err:                     # BadZipFile, EOFError, OSError, KeyError, ValueError, ...
        os.replace(path, path.with_name(path.name + ".corrupt"))
        log.warning("unreadable activation cache %s (%s: %s): moved aside to %s.corrupt, recomputing",
                    path, type(err).__name__, err, path.name)
    return None


def _write_cache(path: Path, key: str, acts: np.ndarray, **meta) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, activations=acts, fingerprint=key, **{k: str(v) for k, v in meta.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- extract
def _check(texts, groups, window, batch_size, dtype) -> None:
    if not texts:
        raise ValueError("texts is empty: give at least one stimulus text")
    if len(groups) != len(texts):
        raise ValueError(f"texts and groups differ in length: {len(texts)} texts, {len(groups)} groups")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"stimulus {i} is empty ({t!r}): every stimulus needs text; drop it or fill it in")
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"context_window must be an int >= 0 (0 = whole group), got {window!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use {', '.join(_DTYPES)}")


_LAST: dict = {}  # the most recently loaded (tokenizer, model, config); _LAST.clear() frees it


def _kept(loader, info, weights, revision, model_dir, device, dtype, cache_dir, progress):
    """loader's (tokenizer, model, config), kept in memory for the next call: a run scores one model
    on every dataset before the next, so only one is held. Keyed by the weights' fingerprint, so a
    folder retrained in place is loaded again."""
    key = (loader.__name__, key_of(weights), revision, str(model_dir), device, dtype)
    if key not in _LAST:
        _LAST.clear()
        _LAST[key] = loader(info, revision, model_dir, device, dtype, cache_dir, progress)
    return _LAST[key]


def extract(model: str, texts: list[str], groups: list[str], *, context_window: int = 0,
            device: str = "auto", dtype: str = "float32", batch_size: int = 8, readout: str = "paper",
            token_type_ids: str = "drop", cache_dir: str | Path | None = None, dataset_key: str = "",
            revision: str | None = None, model_dir: str | Path | None = None, progress: bool = True,
            one_pass: bool = True) -> np.ndarray:
    """Last-token representation of every stimulus in every layer -> (n_stimuli, n_layers_out, hidden) float32.

    model: registry key, hub id or local directory (model_dir: local copy of the weights to use instead;
    for delta releases, the already merged weights). groups: context group per stimulus; the model sees
    the group's texts up to stimulus i (context_window k > 0: at most the k most recent of them).
    device: auto (cuda > mps > cpu), cpu, cuda[:N], mps, or map (device_map='auto'). dtype: float32
    (what the authors ran: they loaded models without a torch_dtype), float16, bfloat16. readout:
    "paper" (LLaMA family at post_attention_layernorm, as PR #194) or "block" (every block's output).
    token_type_ids: "drop" (PR #194) or "pass" (Brain-Score). batch_size: sequences per forward pass
    (similar lengths, at most batch_size * 512 padded tokens). With cache_dir and dataset_key the
    result is cached in <cache_dir>/activations/<model>/<provenance key>/<dataset_key>.npz, keyed by
    provenance() and the texts, groups and window. one_pass=False forces one pass per stimulus
    (Brain-Score's way; for checks and benchmarks)."""
    info, texts, groups = resolve(model), list(texts), list(groups)
    _check(texts, groups, context_window, batch_size, dtype)
    source = provenance(model, revision=revision, model_dir=model_dir, dtype=dtype, readout=readout,
                        token_type_ids=token_type_ids)
    key = key_of({"source": source, "texts": texts, "groups": groups, "window": context_window})
    path = _cache_path(cache_dir, info.name, key_of(source), dataset_key) if cache_dir and dataset_key else None
    if path and (cached := _read_cache(path, key)) is not None:
        return cached
    device = check_device(device)
    tok, net, config = _kept(_load, info, source["weights"], revision, model_dir, device, dtype, cache_dir, progress)
    kind = _kind(config)
    contexts, chains = _contexts(texts, groups, context_window)
    jobs = _plan(tok, kind, contexts, chains, _max_length(tok, config), one_pass)
    acts = _run(net, config, kind, jobs, len(texts), batch_size, progress, info.name, readout,
                _passes_token_types(tok, token_type_ids))
    if path:
        _write_cache(path, key, acts, provenance=json.dumps(source))
    return acts


# --------------------------------------------------------------------------- word features (Wehbe2014)
# Toneva & Wehbe's scheme (mtoneva/brain_language_nlp 0f519a0 extract_nlp_features.py and
# utils/bert_utils.py, utils/xl_utils.py; awwkl/brain_language_summarization f341823
# utils/models/long_t5_utils.py): each word is tokenized on its own, tokens equal to one of
# REMOVE_TOKENS dropped, the window's token ids concatenated; a word's feature is the mean over the
# tokens of the window's last word. No special tokens (T5: the encoder alone, no EOS), except [CLS]
# and [SEP] around BERT-like inputs, as their BERT code adds them.
REMOVE_TOKENS = (",", '"', "@")   # extract_nlp_features.py remove_chars, compared token by token
WORDS_FORMAT = "brainalign-words-v1"  # bump when the word-feature semantics change


def _word_ids(tok, words: list[str]) -> list[list[int]]:
    """Token ids of every word tokenized alone, REMOVE_TOKENS dropped (bert_utils.predict_bert_embeddings)."""
    out = []
    for i, word in enumerate(words):
        tokens = [t for t in tok.tokenize(word) if t not in REMOVE_TOKENS]
        if not tokens:
            raise ValueError(f"word {i} ({word!r}) has no tokens left once {REMOVE_TOKENS} are dropped; "
                             "drop the word from the stimuli or merge it into its neighbour")
        out.append(tok.convert_tokens_to_ids(tokens))
    return out


def _word_jobs(tok, kind, words, window) -> list[tuple[list[int], list[int]]]:
    """-> per word: (token ids of its window, positions of its own tokens in them). The window is the
    word and the window - 1 words before it (fewer at the start: Aw & Toneva's growing prefixes)."""
    ids = _word_ids(tok, words)
    wrap = kind == "encoder" and tok.cls_token_id is not None and tok.sep_token_id is not None
    jobs = []
    for i in range(len(words)):
        seq = [t for w in ids[max(0, i - window + 1):i + 1] for t in w]
        last = list(range(len(seq) - len(ids[i]), len(seq)))
        if wrap:                                                 # [CLS] words [SEP], read the last word
            seq, last = [tok.cls_token_id] + seq + [tok.sep_token_id], [p + 1 for p in last]
        jobs.append((seq, last))
    return jobs


def extract_words(model: str, words: list[str], *, window: int = 20, device: str = "auto",
                  dtype: str = "float32", batch_size: int = 8, readout: str = "paper",
                  token_type_ids: str = "drop", cache_dir: str | Path | None = None, dataset_key: str = "",
                  revision: str | None = None, model_dir: str | Path | None = None,
                  progress: bool = True) -> np.ndarray:
    """Toneva & Wehbe's word features -> (n_words, n_layers_out, hidden) float32: for word i, one
    forward pass over words i-window+1 .. i (tokenized word by word, see REMOVE_TOKENS), the mean
    over word i's tokens of every layer's output (embeddings, then every block, read as extract()
    reads them). T5: the encoder's layers only (the first 1 + n_blocks of layer_names()).
    A causal model needs one pass per window: windows start at different words, so no pass can
    serve two of them. Arguments and caching as extract() (cached as <dataset_key>.words-<window>;
    token_type_ids only enters the provenance: word-by-word inputs carry none)."""
    info, words = resolve(model), list(words)
    _check(words, ["words"] * len(words), window, batch_size, dtype)
    if window < 1:
        raise ValueError(f"window must be >= 1 word, got {window}")
    source = provenance(model, revision=revision, model_dir=model_dir, dtype=dtype, readout=readout,
                        token_type_ids=token_type_ids)
    key = key_of({"source": source, "format": WORDS_FORMAT, "words": words, "window": window})
    path = _cache_path(cache_dir, info.name, key_of(source), f"{dataset_key}.words-{window}") \
        if cache_dir and dataset_key else None
    if path and (cached := _read_cache(path, key)) is not None:
        return cached
    device = check_device(device)
    tok, net, config = _kept(_load, info, source["weights"], revision, model_dir, device, dtype, cache_dir, progress)
    kind = _kind(config)
    jobs = _word_jobs(tok, kind, words, window)
    acts = _run_words(net, config, kind, jobs, batch_size, progress, info.name, readout)
    if path:
        _write_cache(path, key, acts, provenance=json.dumps(source), window=window)
    return acts


def _run_words(net, config, kind, jobs, batch_size, progress, desc, readout="paper") -> np.ndarray:
    """Run the windows in length-sorted, right-padded batches; hooks average each row's read positions.
    Windows are short (~30 tokens for 20 words), so a batch holds many: the token budget bounds it."""
    blocks = _blocks(net, config)[0]                             # T5: the encoder's blocks
    forward = net.get_encoder() if kind == "seq2seq" else net
    out, now = None, {}

    def record(layer, h):                                        # h: (batch, seq, hidden)
        nonlocal out
        mean = torch.einsum("bs,bsh->bh", now["weights"].to(h.device, h.dtype), h)    # (batch, hidden)
        if out is None:
            out = np.zeros((len(jobs), len(blocks) + 1, h.shape[-1]), np.float32)
        out[now["rows"], layer] = mean.float().cpu().numpy()

    hooks = [blocks[0].register_forward_pre_hook(
        lambda m, a, k: record(0, a[0] if a else k["hidden_states"]), with_kwargs=True)]
    norm = _post_attention_norm(config, readout)                 # LLaMA: as extract() reads it
    for j, block in enumerate(blocks):
        hooks.append((block.post_attention_layernorm if norm else block).register_forward_hook(
            lambda m, a, o, l=j + 1: record(l, o[0] if isinstance(o, tuple) else o)))
    batches = [[]]  # similar lengths together, at most batch_size * 512 padded tokens (as extract)
    for i in sorted(range(len(jobs)), key=lambda i: len(jobs[i][0])):
        if batches[-1] and (len(batches[-1]) + 1) * len(jobs[i][0]) > batch_size * 512:
            batches.append([])
        batches[-1].append(i)
    pad = getattr(config, "pad_token_id", None) or 0
    dev = net.get_input_embeddings().weight.device
    try:
        for rows in tqdm(batches, desc=desc, unit="batch", disable=None if progress else True):
            width = max(len(jobs[i][0]) for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)     # right padding: never read
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            weights = torch.zeros((len(rows), width))
            for r, i in enumerate(rows):
                seq, last = jobs[i]
                ids[r, :len(seq)], mask[r, :len(seq)] = torch.tensor(seq), 1
                weights[r, last] = 1.0 / len(last)
            now.update(rows=np.array(rows), weights=weights)
            with torch.inference_mode():
                forward(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                        **({"use_cache": False} if kind == "causal" else {}))
    finally:
        for h in hooks:
            h.remove()
    return out


# --------------------------------------------------------------------------- surprisal
# Reading-time predictions (Futrell2018) as the paper's 2023 Brain-Score computed them
# (brain-score/language 1041be4 model_helpers/huggingface.py: digest_text, _tokenize_overflow_aware,
# estimate_reading_times). Word i is fed as prepare_context(words[:i + 1]), tokenized with
# truncation to the model's maximum length, in one forward pass; its surprisal is the summed
# -log2 p of the tokens the context gained since word i - 1.
def _load_lm(info: ModelInfo, revision, model_dir, device: str, dtype: str, cache_dir, progress=True):
    """-> (tokenizer, model with its trained LM head in eval mode, config). Refuses BERT-like encoders
    and checkpoints whose LM-head weights are missing (transformers would initialise them at random)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    with _quiet(progress):
        source, kw = _source(info, revision, model_dir, cache_dir)
        try:
            config = AutoConfig.from_pretrained(source, **kw)
        except Exception as err:
            raise OSError(_fetch_help(source, err)) from err
        if _kind(config) == "encoder":
            raise ValueError(f"{source} is a {config.model_type} encoder: it has no left-to-right language-model "
                             "head, so it gives no surprisal. Score reading times with a causal LM or T5.")
        load = {_DTYPE_KW: _DTYPES[dtype]}
        if _needs_map(info, load[_DTYPE_KW], device):
            load["device_map"] = "auto"
        head = AutoModelForSeq2SeqLM if _kind(config) == "seq2seq" else AutoModelForCausalLM
        try:
            tok = AutoTokenizer.from_pretrained(source, **kw)
            model, report = head.from_pretrained(source, output_loading_info=True, **kw, **load)
        except Exception as err:
            raise OSError(_fetch_help(source, err)) from err
    if report["missing_keys"]:
        raise ValueError(f"{source} lacks trained weights for {', '.join(sorted(report['missing_keys']))}: it was "
                         "saved without its language-model head (e.g. with AutoModel), so it gives no surprisal. "
                         "Load the checkpoint that includes the head.")
    if not tok.is_fast:
        raise ValueError(f"{source}: Brain-Score counts truncated tokens with a fast (Rust) tokenizer; none loaded")
    if "device_map" not in load:
        model.to(device)
    if _kind(config) == "causal":  # HuggingfaceSubject loads its tokenizer with truncation_side='left'; PR #194
        tok.truncation_side = "left"  # passes T5's own tokenizer (8ace8f3 models/t5): its default side stays
    return tok, model.eval(), config


def _word_inputs(tok, words, max_len, progress=True):
    """Brain-Score's per-word inputs -> [(window ids, n_targets)], one per word: the truncated tokens
    of prepare_context(words[:i + 1]) and how many of its last tokens are word i's (0: no
    prediction). The new tokens are counted as _tokenize_overflow_aware counts them: the context's
    untruncated length is the kept tokens plus those in the tokenizer's overflow pieces, and the
    word's tokens are the window's positions from (previous length - overflow) on, with Python slice
    semantics. The first input that is all new loses its first token (nothing predicts it), and a
    window of one token has no prediction (estimate_reading_times)."""
    tokenized = _tokenized_by_word(tok, words, max_len)
    if tokenized is None:
        log.warning("the tokenizer does not split this text at word boundaries: tokenizing all %d contexts "
                    "whole, as Brain-Score does (quadratic in the text's length)", len(words))
        tokenized = _tokenized_whole(tok, words, max_len, progress)
    inputs, previous = [], 0
    for i, (ids, overflow) in enumerate(tokenized):
        n = len(ids)
        new = len(range(n)[previous - overflow:])  # current_tokens = ids[..., previous - overflow:]
        previous = n + overflow
        if n > 1 and min(new, n - 1) == 0:
            raise ValueError(f"word {i} ({words[i]!r}) adds no tokens to its context under this tokenizer, "
                             "so it has no surprisal (Brain-Score would give it 0 bits): remove it or join "
                             "it to a neighbouring word")
        inputs.append((ids, min(new, n - 1) if n > 1 else 0))
    return inputs


def _tokenized_whole(tok, words, max_len, progress=True, which=None):
    """Yield (window ids, overflow count) for the context of every word (or of the words `which`),
    each context tokenized whole with truncation, as Brain-Score does: O(n^2) in the text."""
    which = range(len(words)) if which is None else list(which)
    for s in tqdm(range(0, len(which), 256), desc="tokenizing", unit="x256", disable=None if progress else True):
        contexts = [prepare_context(words[:i + 1]) for i in which[s:s + 256]]
        for enc in tok(contexts, truncation=True, max_length=max_len).encodings:
            yield enc.ids, sum(len(o.ids) for o in enc.overflowing)


def _tokenized_by_word(tok, words, max_len) -> list | None:
    """What _tokenized_whole yields, from one tokenization of each word, in linear time; None when
    this tokenizer does not split the text at word boundaries. A context's tokens are then the
    concatenation of its words' tokens (each word with the space before it, as prepare_context puts
    it), framed by the tokenizer's special tokens; truncation keeps max_len - n_special of them, and
    the tokenizer returns the overflow in pieces of that size, each framed again. Checked on the
    whole text and on 20 contexts tokenized whole (spread over the text, and where it first
    overflows); any difference -> None."""
    pieces = [w if i == 0 or w[0] in ".,!?;:" else " " + w for i, w in enumerate(words)]
    if "".join(pieces) != prepare_context(words):
        return None
    per_word = tok(pieces, add_special_tokens=False)["input_ids"]
    content = [t for ids in per_word for t in ids]
    if tok(prepare_context(words), add_special_tokens=False, verbose=False)["input_ids"] != content:
        return None
    framed, bare = tok(pieces[0])["input_ids"], per_word[0]
    at = next((k for k in range(len(framed) - len(bare) + 1) if framed[k:k + len(bare)] == bare), None)
    if at is None:
        return None
    pre, post = framed[:at], framed[at + len(bare):]
    room = max_len - len(pre) - len(post)
    if room < 1:
        return None
    out, end = [], 0
    for ids in per_word:
        end += len(ids)
        over = max(0, end - room)
        kept = content[max(0, end - room):end] if tok.truncation_side == "left" else content[:min(end, room)]
        out.append((pre + kept + post, over + (len(pre) + len(post)) * -(-over // room)))
    first_over = next((i for i, (_, over) in enumerate(out) if over), len(out) - 1)
    check = sorted({*np.linspace(0, len(words) - 1, 18).astype(int).tolist(), first_over,
                    min(first_over + 1, len(words) - 1)})
    if any(got != out[i] for i, got in zip(check, _tokenized_whole(tok, words, max_len, False, check))):
        return None
    return out


def _surprisal_jobs(kind, inputs, one_pass=True):
    """-> jobs [(token ids, [(word, n_targets, end), ...])]: one forward sequence each, and where each
    word reads it (the n_targets tokens before position `end`, each predicted from the position before).
    Causal models: consecutive words share one sequence while each window extends the previous one
    (causal attention makes a prefix's logits independent of what follows). That holds until the
    context first overflows the maximum length; from then on every window starts one word later with
    positions restarting at 0, so each runs as its own sequence (batched). T5's encoder sees the whole
    window, so only identical windows share a pass. one_pass=False: one sequence per word."""
    jobs, seen = [], {}
    for word, (ids, n_new) in enumerate(inputs):
        if not n_new:
            continue
        last = jobs[-1][0] if jobs else None
        if kind == "causal" and one_pass and last is not None and (ids[:len(last)] == last or last[:len(ids)] == ids):
            if len(ids) > len(last):
                jobs[-1] = (ids, jobs[-1][1])
            jobs[-1][1].append((word, n_new, len(ids)))
            continue
        if kind != "causal" and one_pass and tuple(ids) in seen:
            jobs[seen[tuple(ids)]][1].append((word, n_new, len(ids)))
            continue
        seen[tuple(ids)] = len(jobs)
        jobs.append((ids, [(word, n_new, len(ids))]))
    return jobs


def _surprisal_run(model, config, kind, jobs, n_words, batch_size, progress, desc) -> np.ndarray:
    """Run the jobs in length-sorted, right-padded batches -> (n_words,) float64 surprisal in bits, NaN
    for words without a prediction. Only the logits of the positions read go through log_softmax."""
    bits, pad = np.full(n_words, np.nan), getattr(config, "pad_token_id", None) or 0
    dev = model.get_input_embeddings().weight.device
    for batch in tqdm(_batches(jobs, batch_size) if jobs else [], desc=desc, unit="batch", disable=None if progress else True):
        width = max(len(x) for x, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)  # right padding: never read
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (x, _) in enumerate(batch):
            ids[r, :len(x)], mask[r, :len(x)] = torch.tensor(x), 1
        inputs = {"input_ids": ids.to(dev)}  # causal: right padding is invisible, no mask needed
        if kind == "seq2seq":  # PR #194 (8ace8f3 model_helpers/huggingface.py): decoder_input_ids = input_ids
            inputs.update(attention_mask=mask.to(dev), decoder_input_ids=inputs["input_ids"],
                          decoder_attention_mask=mask.to(dev))
        reads = [(r, p, x[p], word) for r, (x, rs) in enumerate(batch) for word, n, end in rs for p in range(end - n, end)]
        row, pos, target, word = (torch.tensor(c) for c in zip(*reads))  # (n_reads,) each
        with torch.inference_mode():
            logits = model(**inputs, use_cache=False).logits  # (batch, width, vocab)
            logp = torch.log_softmax(logits[row.to(dev), (pos - 1).to(dev)].float(), dim=-1)  # (n_reads, vocab)
            token_bits = (-logp[torch.arange(len(reads)), target.to(dev)] / math.log(2)).cpu().numpy()
        words = word.numpy()
        bits[np.unique(words)] = 0.0
        np.add.at(bits, words, token_bits)  # a word's tokens add up (estimate_reading_times: reduction='sum')
    return bits


def surprisal(model: str, words: list[str], *, device: str = "auto", dtype: str = "float32", batch_size: int = 8,
              revision: str | None = None, model_dir: str | Path | None = None, cache_dir: str | Path | None = None,
              progress: bool = True, one_pass: bool = True) -> np.ndarray:
    """Surprisal in bits of every word given all the words before it -> (n_words,) float64, equal to
    Brain-Score's per-word computation (one forward pass per word) to float32 rounding. NaN where
    Brain-Score has no prediction: a word whose input is a single token (the first word, unless it
    has several tokens or the tokenizer adds a BOS token).

    The words form one running context (Futrell2018 passes its 10 stories as one list). Causal
    models run the words up to the first overflow of the maximum length as one sequence, then one
    left-truncated window per word, batched (see _surprisal_jobs). T5 follows the authors' PR #194:
    the window goes to the encoder and, unshifted, as decoder_input_ids, the decoder's LM-head logits
    are read, and its tokenizer keeps its own truncation side (right) and its </s>, which the word
    count of new tokens then includes. model, device, dtype, revision, model_dir: as extract().
    cache_dir: where delta releases are merged. one_pass=False: one pass per word (for checks)."""
    info, words = resolve(model), list(words)
    if not words:
        raise ValueError("words is empty: give the words in reading order")
    for i, w in enumerate(words):
        if not isinstance(w, str) or not w.strip() or w != w.strip():
            raise ValueError(f"word {i} is {w!r}: every word needs text and no surrounding whitespace")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use {', '.join(_DTYPES)}")
    device = check_device(device)
    weights = provenance(model, revision=revision, model_dir=model_dir, dtype=dtype)["weights"]
    tok, net, config = _kept(_load_lm, info, weights, revision, model_dir, device, dtype, cache_dir, progress)
    kind = _kind(config)
    jobs = _surprisal_jobs(kind, _word_inputs(tok, words, _max_length(tok, config), progress), one_pass)
    return _surprisal_run(net, config, kind, jobs, len(words), batch_size, progress, info.name)


# --------------------------------------------------------------------------- tiny models
_TINY = {  # family -> special tokens (vocabulary order), their roles, pre-tokenizer, template, model class
    "gpt2": (["<|endoftext|>", "<unk>"], ["bos", "unk"], "bytelevel", None, "AutoModelForCausalLM"),
    "llama": (["<unk>", "<s>", "</s>"], ["unk", "bos", "eos"], "metaspace", "<s> $A", "AutoModelForCausalLM"),
    "t5": (["<pad>", "</s>", "<unk>"], ["pad", "eos", "unk"], "metaspace", "$A </s>", "AutoModelForSeq2SeqLM"),
    "bert": (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], ["pad", "unk", "cls", "sep", "mask"], "bert",
             "[CLS] $A [SEP]", "AutoModel"),
}


def _tiny_tokenizer(family, texts, max_positions):
    from tokenizers import Tokenizer, models as tm, normalizers, pre_tokenizers, processors
    specials, roles, pre, template, _ = _TINY[family]
    named = {f"{role}_token": s for s, role in zip(specials, roles)}
    pre_tok = {"bytelevel": pre_tokenizers.ByteLevel(add_prefix_space=False),
               "metaspace": pre_tokenizers.Metaspace(prepend_scheme="first"),
               "bert": pre_tokenizers.BertPreTokenizer()}[pre]
    norm = normalizers.BertNormalizer(lowercase=True) if family == "bert" else None
    words = set()
    for t in [*texts, *(" " + t for t in texts), prepare_context(list(texts))]:
        words.update(w for w, _ in pre_tok.pre_tokenize_str(norm.normalize_str(t) if norm else t))
    vocab = {w: i for i, w in enumerate(specials + sorted(words - set(specials)))}
    tok = Tokenizer(tm.WordLevel(vocab, unk_token=named["unk_token"]))
    tok.pre_tokenizer, tok.normalizer = pre_tok, norm
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(s, vocab[s]) for s in specials if s in template])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_positions, **named)


def make_tiny_model(family: str, out_dir: str | Path, texts: list[str], seed: int = 0, *,
                    n_layers: int = 2, width: int = 32, max_positions: int = 128) -> Path:
    """Write a random-weight model (n_layers blocks, hidden size width) with an offline word-level
    tokenizer whose vocabulary covers `texts`; extract(str(out_dir), ...) loads it like any model."""
    if family not in _TINY:
        raise ValueError(f"unknown tiny model family {family!r}: use {', '.join(_TINY)}")
    tok = _tiny_tokenizer(family, texts, max_positions)
    heads = max(1, width // 16)
    extra = {"gpt2": dict(n_inner=2 * width, bos_token_id=0, eos_token_id=0),
             "llama": dict(bos_token_id=1, eos_token_id=2),
             "t5": dict(d_ff=2 * width, d_kv=width // heads, num_decoder_layers=n_layers,
                        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0),
             "bert": dict(pad_token_id=0)}[family]
    config = transformers.AutoConfig.for_model(
        family, vocab_size=len(tok), hidden_size=width, num_hidden_layers=n_layers, num_attention_heads=heads,
        intermediate_size=2 * width, max_position_embeddings=max_positions, initializer_range=0.2, **extra)
    torch.manual_seed(seed)
    net = getattr(transformers, _TINY[family][4]).from_config(config)
    out_dir = Path(out_dir)
    with _quiet(progress=False):
        net.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
    return out_dir
