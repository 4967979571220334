"""Layer activations, word features and surprisal of HuggingFace language models, read as the paper's code
read them.

extract(): stimulus i of a context group (passage, story) is read in the context of the group's texts up to
and including i (prepare_context), truncated on the left to the model's maximum length (Brain-Score); the
representation is the last token of every layer: the embeddings, then every block (T5: encoder, then
decoder), read by forward hooks before any final norm. extract_words(): Toneva & Wehbe's word features
(Wehbe2014). surprisal(): every word's surprisal in one running context, as Brain-Score 2023 computed it.
Default: the authors' code (Brain-Score PR #194, brain-score/language 91c88b1): float32 weights,
token_type_ids dropped, LLaMA read at post_attention_layernorm. brainscore=True: Brain-Score 2.3.0's model
side (token_type_ids passed where the tokenizer declares them, every block's output).
Leaves out: scoring (brainalign.py), datasets (data.py), generation, quantisation, hub revisions.
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
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm

log = logging.getLogger(__name__)
FORMAT = "brainalign-activations-v3"  # bump when what extract, extract_words or surprisal compute changes
_NAN = float("nan")


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ModelInfo:
    name: str              # registry key; a local folder: "<folder name>@<8 hex digits of its absolute path>"
    hub_id: str            # what transformers loads (a delta release: the delta; a local folder: its path)
    family: str            # "t5" | "llama" | "gpt2" | "" (unknown)
    params: float          # parameter count as the paper gives it (nan when unknown)
    n_layers: int          # the paper's layer count (T5: encoder + decoder blocks); 0 when unknown
    base: str | None       # registry key of the vanilla model it was tuned from; None for vanilla models
    in_paper: bool = False                                  # among the paper's 25 models
    paper: tuple[float, float, float, float] | None = None  # Table 5: Pereira, Blank, Wehbe, Average
    futrell: float | None = None   # Table 9: Futrell2018 reading times
    nwp_loss: float | None = None  # Table 7: next-word-prediction loss, MMLU, BBH
    mmlu: float | None = None
    bbh: float | None = None
    delta_base: str | None = None  # hub id of the weights a delta release is added to
    note: str = ""


# A vanilla model: name, hub id, family, parameters, layers (T5: encoder + decoder blocks), Table 5 (Pereira,
# Blank, Wehbe, Average), Table 9 (Futrell2018). Indented under it, the models tuned from it: name, hub id,
# Table 5, Table 9, Table 7 (next-word loss, MMLU, BBH). "note:" is about the row above; "delta:" makes it a
# weight difference on its vanilla model. GPT-2: the appendix pairs, whose Average alone is given.
_TABLE = """
t5-small              google/t5-v1_1-small             t5    77e6  16 .166 .168 .071 .135 .229
  flan-t5-small       google/flan-t5-small                            .202 .178 .079 .153 .054 .851  .294 .287
t5-base               google/t5-v1_1-base              t5    250e6 24 .222 .188 .074 .162 .333
  flan-t5-base        google/flan-t5-base                             .234 .178 .076 .163 .152 1.235 .341 .308
  flan-alpaca-base    declare-lab/flan-alpaca-base                    .227 .179 .076 .161 .290 1.074 .304 .266
t5-large              google/t5-v1_1-large             t5    800e6 48 .270 .082 .071 .141 .303
  flan-t5-large       google/flan-t5-large                            .311 .104 .080 .165 .145 .625  .419 .370
  flan-alpaca-large   declare-lab/flan-alpaca-large                   .322 .126 .082 .177 .291 .648  .397 .276
t5-xl                 google/t5-v1_1-xl                t5    3e9   48 .285 .192 .072 .183 .225
  flan-t5-xl          google/flan-t5-xl                               .314 .215 .072 .200 .113 .650  .493 .402
  flan-alpaca-xl      declare-lab/flan-alpaca-xl                      .312 .209 .075 .199 .181 .604  .466 .270
  flan-gpt4all-xl     declare-lab/flan-gpt4all-xl                     .300 .206 .078 .195 .251 .625  .337 .212
  flan-sharegpt-xl    declare-lab/flan-sharegpt-xl                    .323 .211 .070 .201 .285 .664  .446 .363
  flan-alpaca-gpt4-xl declare-lab/flan-alpaca-gpt4-xl                 .302 .205 .073 .193 .250 .593  .456 .348
t5-xxl                google/t5-v1_1-xxl               t5    11e9  48 .343 .297 .096 .246 .260
  flan-t5-xxl         google/flan-t5-xxl                              .350 .268 .103 .240 .274 .638  .545 .443
  flan-alpaca-xxl     declare-lab/flan-alpaca-xxl                     .346 .268 .102 .239 .267 .607  .508 .229
llama-7b              huggyllama/llama-7b              llama 7e9   32 .405 .154 .118 .226 .204
    note: Meta's LLaMA-1 weights converted to transformers by the community (Meta never put them on the hub)
  alpaca-7b           chavinlo/alpaca-native                          .420 .167 .118 .235 .206 4.201 .404 .328
    note: a community replication of Stanford Alpaca, registered as alpaca-7b by PR #194 (91c88b1 models/llama)
  vicuna-7b           lmsys/vicuna-7b-v1.3                            .399 .152 .119 .223 .205 4.387 .472 .331
llama-13b             huggyllama/llama-13b             llama 13e9  40 .412 .133 .115 .220 .184
    note: Meta's LLaMA-1 weights converted to transformers by the community (Meta never put them on the hub)
  vicuna-13b          lmsys/vicuna-13b-v1.3                           .423 .148 .116 .229 .184 4.130 .521 .387
  stable-vicuna-13b   CarperAI/stable-vicuna-13b-delta                .415 .144 .115 .225 .196 4.623 .495 .380
    delta: CarperAI's weight difference on LLaMA-13B; merge_delta() adds it to huggyllama/llama-13b
llama-33b             huggyllama/llama-30b             llama 33e9  60 .426 .145 .109 .227 .158
    note: the community's conversion of Meta's LLaMA-30B (32.5B parameters; the paper says 33B)
  vicuna-33b          lmsys/vicuna-33b-v1.3                           .436 .156 .105 .232 .164 3.940 .590 .426
gpt2                  openai-community/gpt2            gpt2  124e6 12 nan  nan  nan  .172
  gpt2-alpaca         vicgalle/gpt2-alpaca                            nan  nan  nan  .167
gpt2-medium           openai-community/gpt2-medium     gpt2  355e6 24 nan  nan  nan  .166
  gpt2-medium-alpaca  linkanjarad/GPT2-Medium-Alpaca-355m             nan  nan  nan  .165
gpt2-large            openai-community/gpt2-large      gpt2  774e6 36 nan  nan  nan  .173
  gpt2-large-alpaca   reasonwang/gpt2-large-alpaca                    nan  nan  nan  .170
gpt2-xl               openai-community/gpt2-xl         gpt2  1.5e9 48 nan  nan  nan  .200
  gpt2-xl-alpaca      Rachneet/gpt2-xl-alpaca                         nan  nan  nan  .192
"""


def _registry(table: str) -> dict[str, ModelInfo]:
    rows = []
    for line in table.strip("\n").splitlines():
        name, *fields = line.split()
        if name in ("note:", "delta:"):
            rows[-1] = replace(rows[-1], note=" ".join(fields), delta_base=vanilla.hub_id if name == "delta:" else None)
            continue
        if line.startswith(" "):                       # tuned from the vanilla model above
            hub_id, *values = fields
            head = (name, hub_id, vanilla.family, vanilla.params, vanilla.n_layers, vanilla.name)
        else:
            hub_id, family, params, n_layers, *values = fields
            head = (name, hub_id, family, float(params), int(n_layers), None)
        in_paper, values = head[2] != "gpt2", [float(v) for v in values]
        rows.append(ModelInfo(*head, in_paper, tuple(values[:4]), *values[4:],
                              note="" if in_paper else "appendix pair: the paper gives only the average"))
        vanilla = rows[-1] if head[5] is None else vanilla
    return {m.name: m for m in rows}


MODELS: dict[str, ModelInfo] = _registry(_TABLE)
_BY_HUB_ID = {m.hub_id: m for m in MODELS.values()}


def resolve(name: str) -> ModelInfo:
    """A registry key, a local model folder or a hub id ("owner/name") -> ModelInfo. A local folder is named
    "<folder name>@<8 hex digits of its absolute path>": unique, the same from any working folder."""
    choices = f"give a registry name ({', '.join(MODELS)}), a hub id (owner/name) or a local model folder"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name {name!r} is empty: {choices}")
    path = Path(name).expanduser()
    if name not in MODELS and path.is_dir():
        path, config = path.resolve(), path / "config.json"
        try:
            family = json.loads(config.read_text()).get("model_type", "")
        except (OSError, ValueError, AttributeError) as err:
            raise ValueError(f"{config} is not a model config ({type(err).__name__}: {err}): a model folder holds "
                             "config.json, tokenizer and weights as save_pretrained writes them") from None
        family = family if family in ("t5", "llama", "gpt2") else ""
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
        return ModelInfo(f"{path.name or 'model'}@{digest}", str(path), family, _NAN, 0, None, note=f"folder {path}")
    if name in MODELS or name in _BY_HUB_ID:
        return MODELS.get(name) or _BY_HUB_ID[name]
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", name):
        return ModelInfo(name, name, "", _NAN, 0, None, note="hub id, not in the registry")
    if path.exists() or name.startswith((".", "~")) or "/" in name or "\\" in name:
        raise ValueError(f"no such folder {name}{' (it is a file)' if path.exists() else ''}: give the folder "
                         "that holds the model's config.json and weights, or a hub id (owner/name)")
    raise ValueError(f"unknown model {name!r}: {choices}")


def identity(info: ModelInfo, *, dtype: str = "float32", brainscore: bool = False) -> dict:
    """What decides a model's outputs, known with no network and no model load: the weights (hub id, or a
    local folder's path and a fingerprint of its files' names, sizes, times and config.json), dtype,
    readout, token_type_ids and the format. Keys every cache entry."""
    _check_options(dtype)
    weights = {"hub_id": info.hub_id, "revision": "main", "delta_on": info.delta_base}
    if os.path.isabs(info.hub_id) and not info.delta_base:            # a local folder
        folder = Path(info.hub_id)
        digest = hashlib.sha256((folder / "config.json").read_bytes())
        for f in sorted(p for p in folder.iterdir() if p.is_file()):
            digest.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns};".encode())
        weights = {"path": str(folder), "files": digest.hexdigest()[:16]}
    return {"format": FORMAT, "weights": weights, "dtype": dtype, "readout": "block" if brainscore else "paper",
            "token_type_ids": "pass" if brainscore else "drop"}


# --------------------------------------------------------------------------- argument checks
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _whole(value, what: str, least: int) -> int:
    """value as an int (a Python or numpy integer); bools, floats and values below `least` are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{what} must be a whole number >= {least}, got {value!r}")
    return int(value)


def _check_options(dtype: str, batch_size=1) -> int:
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use {', '.join(_DTYPES)}")
    return _whole(batch_size, "batch_size", 1)


def _check_texts(texts: list, plural: str, one: str, strip: bool = False) -> None:
    if not texts:
        raise ValueError(f"{plural} is empty: give at least one {one}, in presentation order")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip() or (strip and t != t.strip()):
            rule = "text and no surrounding whitespace" if strip else "text: drop it or fill it in"
            raise ValueError(f"{one} {i} is {t!r}: every {one} needs {rule}")


def check_device(device: str) -> str:
    """The torch device for a --device value, or a ValueError that says what to use instead."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if device not in ("cpu", "mps", "map") and not re.fullmatch(r"cuda(:\d+)?", str(device)):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N, mps or map (all GPUs)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for but Apple's MPS backend is not available here: use 'auto' or 'cpu'")
    if device not in ("cpu", "mps") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available here: use 'auto' or 'cpu'")
    if device == "map" and not importlib.util.find_spec("accelerate"):
        raise ValueError("device 'map' (device_map='auto') needs accelerate: pip install accelerate")
    return device


# --------------------------------------------------------------------------- contexts
def prepare_context(parts: list[str]) -> str:
    """Brain-Score's context: parts joined by single spaces, empty parts dropped, no space before .,!?;:"""
    return re.sub(r"\s+([.,!?;:])", r"\1", " ".join(p for p in parts if p.strip()))


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


def _plan(tok, kind, contexts, chains, max_len):
    """-> jobs [(token ids, [(stimulus, [position])])]: one forward sequence each, and where to read it.
    Causal models: one sequence per chain, read at the last token of every stimulus whose own tokens are a
    prefix of it (under causal attention, the computation of one pass per prefix); the others (tokenised
    differently there, or longer than max_len) run alone, truncated as the tokenizer truncates."""
    jobs, alone = [], []
    for chain in chains:
        if kind != "causal" or len(chain) == 1:
            alone += chain
            continue
        full, reads = tok(contexts[chain[-1]], verbose=False)["input_ids"][:max_len], []
        for s in range(0, len(chain), 256):  # a few prefixes at a time: a long group's prefixes are O(n^2)
            ids = tok([contexts[i] for i in chain[s:s + 256]], verbose=False)["input_ids"]  # untruncated
            reads += [(i, [len(x) - 1]) for i, x in zip(chain[s:s + 256], ids)
                      if 0 < len(x) <= len(full) and x == full[:len(x)]]
        if reads:
            jobs.append((full[:max(p for _, (p,) in reads) + 1], reads))
        done = {i for i, _ in reads}
        alone += [i for i in chain if i not in done]
    if alone:
        ids = tok([contexts[i] for i in alone], truncation=True, max_length=max_len)["input_ids"]
        jobs += [(x, [(i, [len(x) - 1])]) for i, x in zip(alone, ids)]
    for x, reads in jobs:
        if not x:
            raise ValueError(f"stimulus {reads[0][0]} tokenizes to nothing: {contexts[reads[0][0]]!r}")
    return jobs


# --------------------------------------------------------------------------- loading
_ENCODERS = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "xlm-roberta", "mpnet"}
_DTYPE_KW = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "spiece.model",
                    "tokenizer.model", "sentencepiece.bpe.model")


def _kind(config) -> str:
    """'seq2seq' (T5), 'encoder' (BERT-like, bidirectional) or 'causal' (decoder-only)."""
    if config.is_encoder_decoder:
        return "seq2seq"
    return "encoder" if config.model_type in _ENCODERS else "causal"


def _load_error(source: str, err: Exception) -> OSError:
    todo = (f"check the name at https://huggingface.co/{source} (no folder {source} exists here either); for a "
            "gated model accept its licence there and run `hf auth login` or set HF_TOKEN; offline, give a local "
            "folder as the model name, or set HF_HUB_OFFLINE=1 to use the HuggingFace cache")
    if Path(source).is_dir():
        todo = f"{source} must hold config.json, the tokenizer files and the weights, as save_pretrained writes them"
    return OSError(f"could not load {source!r}: {type(err).__name__}: {' '.join(str(err).split())} What to do: {todo}")


def _config(source: str):
    try:
        return transformers.AutoConfig.from_pretrained(source)
    except Exception as err:
        raise _load_error(source, err) from err


@contextmanager
def _quiet(progress: bool):
    """Mute transformers' load report (AutoModel drops the LM head on purpose) and, unless progress, its bars."""
    hf = transformers.utils.logging
    level, bars = hf.get_verbosity(), hf.is_progress_bar_enabled()
    hf.set_verbosity_error()
    if not progress:
        hf.disable_progress_bar()
    try:
        yield
    finally:
        hf.set_verbosity(level)
        if bars:
            hf.enable_progress_bar()


def merge_delta(base: str, delta: str, out_dir: str | Path, revision: str | None = None) -> Path:
    """Full weights from a weight-difference release: every tensor = base + delta, summed in float32, stored in
    the delta's dtype; vocabulary rows the delta adds (StableVicuna's [PAD]) start from the mean of the base
    rows (Stanford Alpaca's recovery recipe; never read). Written once to a temporary folder renamed to
    out_dir (removed whatever happens); if another job finishes the same merge first, its result is used."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    log.warning("merging %s + %s into %s (once)", base, delta, out_dir)
    try:
        b = transformers.AutoModelForCausalLM.from_pretrained(base, **{_DTYPE_KW: "auto"})
        d = transformers.AutoModelForCausalLM.from_pretrained(delta, revision=revision, **{_DTYPE_KW: "auto"})
        tok = transformers.AutoTokenizer.from_pretrained(delta, revision=revision)  # deltas ship their tokenizer
    except Exception as err:
        raise _load_error(f"{base} + {delta}", err) from err
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


_KEPT: dict = {}  # the one model kept loaded: key -> (tokenizer, model, config); _KEPT.clear() frees it


def _load(info: ModelInfo, weights: dict, device: str, dtype: str, cache_dir, progress=True, lm_head=False):
    """-> (tokenizer, model in eval mode, config), with the trained language-model head if lm_head. Kept for
    the next call (a run scores one model on every dataset before the next), keyed by the weights' identity
    (a folder retrained in place loads again); the previous model goes first. A delta release is merged
    once into <cache_dir>/merged. The tokenizer truncates on the left (Brain-Score's HuggingfaceSubject),
    except T5's for surprisal: PR #194 (8ace8f3 models/t5) passes T5's own tokenizer, whose side is right."""
    key = (info.name, json.dumps(weights, sort_keys=True), device, dtype, lm_head, str(cache_dir))
    if key in _KEPT:
        return _KEPT[key]
    _KEPT.clear()
    source = info.hub_id
    if info.delta_base:
        folder = Path(cache_dir or Path.home() / ".cache" / "brainalign", "merged", info.name, "main")
        source = str(merge_delta(info.delta_base, info.hub_id, folder))
    if Path(source).is_dir() and not any((Path(source) / f).exists() for f in _TOKENIZER_FILES):
        raise OSError(f"{source} has no tokenizer files (one of {', '.join(_TOKENIZER_FILES)}): save them there "
                      "with tokenizer.save_pretrained(FOLDER), or copy them from the model's hub page")
    config = _config(source)
    kind, auto = _kind(config), transformers.AutoModel
    if lm_head and kind == "encoder":
        raise ValueError(f"{source} is a {config.model_type} encoder: it has no left-to-right language-model "
                         "head, so it gives no surprisal. Score reading times with a causal LM or T5.")
    if lm_head:
        auto = transformers.AutoModelForSeq2SeqLM if kind == "seq2seq" else transformers.AutoModelForCausalLM
    with _quiet(progress):
        try:
            tok = transformers.AutoTokenizer.from_pretrained(source)
            net, report = auto.from_pretrained(source, output_loading_info=True, **{_DTYPE_KW: _DTYPES[dtype]},
                                               **({"device_map": "auto"} if device == "map" else {}))
        except Exception as err:
            raise _load_error(source, err) from err
    if lm_head and report["missing_keys"]:
        raise ValueError(f"{source} lacks trained weights for {', '.join(sorted(report['missing_keys']))}: saved "
                         "without its language-model head, it gives no surprisal; load the checkpoint with it")
    if device != "map":
        net.to(device)
    if not lm_head or kind == "causal":
        tok.truncation_side = "left"
    _KEPT[key] = tok, net.eval(), config
    return _KEPT[key]


def _max_length(tok, config) -> int:
    """Brain-Score truncates to the tokenizer's model_max_length; the position table (T5 has none) caps it."""
    positions = None
    if _kind(config) != "seq2seq":
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    limits = [int(x) for x in (tok.model_max_length, positions) if isinstance(x, (int, float)) and 0 < x < 1e7]
    return min(limits) if limits else 10 ** 9


# --------------------------------------------------------------------------- layers
def _stacks(config) -> list[tuple[str, int]]:
    """-> [(stack name, number of blocks)]: one stack, or encoder and decoder for seq2seq."""
    if _kind(config) != "seq2seq":
        return [("", config.num_hidden_layers)]
    return [("encoder", config.num_hidden_layers),
            ("decoder", getattr(config, "num_decoder_layers", None) or config.decoder_layers)]


def _post_attention(config, brainscore: bool) -> bool:
    """Read a block at its post_attention_layernorm? PR #194 (brain-score/language 91c88b1,
    models/llama/__init__.py) registers LLaMA, Alpaca and Vicuna at `model.layers.N.post_attention_layernorm`
    (the residual stream after attention, normalised, before the MLP); T5 (`encoder.block.N`,
    `decoder.block.N`, 8ace8f3 models/t5) and GPT-2 (`transformer.h.N`) at the block output, as Brain-Score
    2.3.0 reads every model."""
    return not brainscore and config.model_type == "llama"


def layer_names(model: str, *, brainscore: bool = False) -> list[str]:
    """Names of extract()'s layers, in order, from the model's config (no weights are loaded). A name ending
    in "embeddings" is the input to the first block of its stack; the paper counts blocks only."""
    config = _config(resolve(model).hub_id)
    suffix = ".post_attention_layernorm" if _post_attention(config, brainscore) else ""
    names = []
    for stack, n in _stacks(config):
        prefix = f"{stack}." if stack else ""
        names += [f"{prefix}embeddings"] + [f"{prefix}block.{j}{suffix}" for j in range(n)]
    return names


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


# --------------------------------------------------------------------------- running
def _run(net, kind: str, jobs, batch_size: int, *, reader=None, token_types=False, cap_rows=True,
         progress=True, desc=""):
    """Yield (batch, model output) for jobs [(token ids, reads)], sorted by length and run in right-padded
    batches of at most batch_size * 512 tokens and (cap_rows) batch_size sequences; padding follows every
    position read. Inputs as the authors' code builds them: a causal model gets no attention mask (right
    padding is invisible to causal attention, and the fast kernels apply); T5 gets the context also as
    decoder_input_ids (PR #194, 8ace8f3 model_helpers/huggingface.py); token_types: zeros, as a tokenizer
    returns them for one text. reader.select(batch, width) runs before each pass."""
    batches = [[]]
    for job in sorted(jobs, key=lambda j: len(j[0])):
        full = cap_rows and len(batches[-1]) == batch_size
        if batches[-1] and (full or (len(batches[-1]) + 1) * len(job[0]) > batch_size * 512):
            batches.append([])
        batches[-1].append(job)
    pad, dev = getattr(net.config, "pad_token_id", None) or 0, net.get_input_embeddings().weight.device
    for batch in tqdm(batches, desc=desc, unit="batch", disable=None if progress else True):
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)        # (batch, width)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (x, _) in enumerate(batch):
            ids[r, :len(x)], mask[r, :len(x)] = torch.tensor(x), 1
        inputs = {"input_ids": ids.to(dev)}
        if kind != "causal":
            inputs["attention_mask"] = mask.to(dev)
        if token_types:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        if kind == "seq2seq":
            inputs.update(decoder_input_ids=inputs["input_ids"], decoder_attention_mask=inputs["attention_mask"])
        if kind != "encoder":
            inputs["use_cache"] = False
        if reader:
            reader.select(batch, width)
        with torch.inference_mode():
            out = net(**inputs)
        yield batch, out


class _Reader:
    """Forward hooks that copy out, layer by layer, the mean of the hidden states at each read's positions
    (extract: the last token; extract_words: a word's tokens); only one layer's states live at a time.
    out: (n_rows, n_layers, hidden) float32, filled as the batches run."""

    def __init__(self, stacks: list[torch.nn.ModuleList], n_rows: int, post_attention: bool):
        self.out, self.n_rows, self.hooks, layer = None, n_rows, [], 0
        for blocks in stacks:
            # the embeddings layer is the input of the first block (GPT-2: token + position embeddings);
            # transformers passes it by position or by keyword
            self.hooks.append(blocks[0].register_forward_pre_hook(partial(self._input, layer), with_kwargs=True))
            for j, block in enumerate(blocks):
                module = block.post_attention_layernorm if post_attention else block
                self.hooks.append(module.register_forward_hook(partial(self._output, layer + 1 + j)))
            layer += len(blocks) + 1
        self.n_layers = layer

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()

    def select(self, batch, width: int) -> None:
        """Which positions of the flattened (batch * width) states each read averages, padded with weight 0."""
        self.rows, index = [], []
        for r, (_, reads) in enumerate(batch):
            for row, positions in reads:
                self.rows.append(row)
                index.append([r * width + p for p in positions])
        k = max(len(x) for x in index)
        self.weight = torch.tensor([[1 / len(x)] * len(x) + [0.0] * (k - len(x)) for x in index])  # (n_reads, k)
        self.index = torch.tensor([x + [x[0]] * (k - len(x)) for x in index])                      # (n_reads, k)

    def _input(self, layer, module, args, kwargs):
        self._record(layer, args[0] if args else kwargs["hidden_states"])

    def _output(self, layer, module, args, output):
        self._record(layer, output[0] if isinstance(output, tuple) else output)

    def _record(self, layer: int, h: torch.Tensor) -> None:                  # h: (batch, width, hidden)
        picked = h.reshape(-1, h.shape[-1])[self.index.to(h.device)].float()  # (n_reads, k, hidden)
        mean = (picked * self.weight.to(h.device)[..., None]).sum(1)           # (n_reads, hidden)
        if self.out is None:
            self.out = np.zeros((self.n_rows, self.n_layers, h.shape[-1]), np.float32)
        self.out[self.rows, layer] = mean.cpu().numpy()


# --------------------------------------------------------------------------- cache
def safe_name(s: str) -> str:
    """A file-name-safe form of a model or dataset name: never empty, never '.' or '..'."""
    return re.sub(r"[^A-Za-z0-9._@-]+", "--", s).strip("-.") or "_"


def _entry(cache_dir, info: ModelInfo, **what) -> tuple[Path | None, str]:
    """-> (<cache_dir>/activations/<model>/<key>.npz, or None without a cache_dir; key = a hash of what)."""
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return (Path(cache_dir, "activations", safe_name(info.name), f"{key}.npz") if cache_dir else None), key


def _cached(path: Path | None, key: str, compute, nan_ok: bool = False) -> np.ndarray:
    """compute()'s array, read from path when it holds the result for key. A file that cannot be read, holds
    another key, or holds inf (or NaN, unless nan_ok) is moved aside to a new <name>.corrupt with a warning
    naming it, and recomputed. Written through a temporary file and a rename."""
    def bad(values):
        return np.isinf(values).any() or (not nan_ok and np.isnan(values).any())

    if path and path.exists():
        try:
            with np.load(path) as f:
                values, stored = f["values"], str(f["key"])
            if stored != key or bad(values):
                raise ValueError("another key" if stored != key else "inf or NaN values")
            return values
        except Exception as err:                     # BadZipFile, EOFError, OSError, KeyError, ValueError, ...
            aside, n = path.with_name(path.name + ".corrupt"), 1
            while aside.exists():
                aside, n = path.with_name(f"{path.name}.{n}.corrupt"), n + 1
            os.replace(path, aside)
            log.warning("unreadable cache %s (%s: %s): moved aside to %s, recomputing",
                        path, type(err).__name__, err, aside.name)
    values = compute()
    if bad(values):
        raise ValueError("the model gave inf or NaN (an overflow: with float16 or bfloat16, use dtype='float32')")
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, values=values, key=key)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return values


# --------------------------------------------------------------------------- extract
def extract(model: str, texts: list[str], groups: list[str], *, window: int = 0, brainscore: bool = False,
            device: str = "auto", dtype: str = "float32", batch_size: int = 8, cache_dir: str | Path | None = None,
            progress: bool = True) -> np.ndarray:
    """Last-token representation of every stimulus in every layer -> (n_stimuli, n_layers, hidden) float32.
    model: registry key, hub id or local folder. groups: context group per stimulus; the model sees the
    group's texts up to stimulus i (window k > 0: at most the k most recent). brainscore: Brain-Score 2.3.0's
    model side instead of the authors' PR #194. device: auto (cuda > mps > cpu), cpu, cuda[:N], mps or map
    (device_map='auto'). dtype: float32 (the authors loaded models without a torch_dtype), float16 or
    bfloat16. batch_size: sequences per forward pass. cache_dir: results are cached in
    <cache_dir>/activations/<model>/<key>.npz, key = a hash of identity(), texts, groups and window."""
    info, texts, groups = resolve(model), list(texts), list(groups)
    _check_texts(texts, "texts", "stimulus")
    if len(groups) != len(texts):
        raise ValueError(f"texts and groups differ in length: {len(texts)} texts, {len(groups)} groups")
    window, batch_size, device = _whole(window, "window", 0), _check_options(dtype, batch_size), check_device(device)
    ident = identity(info, dtype=dtype, brainscore=brainscore)
    path, key = _entry(cache_dir, info, identity=ident, kind="layers", texts=texts, groups=groups, window=window)

    def compute():
        tok, net, config = _load(info, ident["weights"], device, dtype, cache_dir, progress)
        jobs = _plan(tok, _kind(config), *_contexts(texts, groups, window), _max_length(tok, config))
        # Brain-Score calls model(**tokenizer(context)): declared token_type_ids go in (a GPT-2 embeds them
        # with its token table); PR #194 (91c88b1 model_helpers/huggingface.py) pops them
        token_types = brainscore and "token_type_ids" in tok.model_input_names
        with _Reader(_blocks(net, config), len(texts), _post_attention(config, brainscore)) as reader:
            for _ in _run(net, _kind(config), jobs, batch_size, reader=reader, token_types=token_types,
                          progress=progress, desc=info.name):
                pass
        return reader.out
    return _cached(path, key, compute)


# --------------------------------------------------------------------------- word features (Wehbe2014)
# Toneva & Wehbe's scheme (mtoneva/brain_language_nlp 0f519a0 extract_nlp_features.py, utils/bert_utils.py,
# utils/xl_utils.py; awwkl/brain_language_summarization f341823 utils/models/long_t5_utils.py): each word is
# tokenized on its own, tokens equal to one of REMOVE_TOKENS dropped, the window's token ids concatenated; a
# word's feature is the mean over the tokens of the window's last word. No special tokens (T5: the encoder
# alone, no EOS), except [CLS] and [SEP] around BERT-like inputs, as their BERT code adds them.
REMOVE_TOKENS = (",", '"', "@")   # extract_nlp_features.py remove_chars, compared token by token


def _word_jobs(tok, kind, words, window) -> list[tuple[list[int], list]]:
    """-> per word: (token ids of its window, [(word, positions of its own tokens)]). The window is the word
    and the window - 1 words before it (fewer at the start: Aw & Toneva's growing prefixes)."""
    ids = []
    for i, word in enumerate(words):                       # bert_utils.predict_bert_embeddings
        tokens = [t for t in tok.tokenize(word) if t not in REMOVE_TOKENS]
        if not tokens:
            raise ValueError(f"word {i} ({word!r}) has no tokens left once {REMOVE_TOKENS} are dropped; "
                             "drop the word from the stimuli or merge it into its neighbour")
        ids.append(tok.convert_tokens_to_ids(tokens))
    wrap = kind == "encoder" and tok.cls_token_id is not None and tok.sep_token_id is not None
    jobs = []
    for i in range(len(words)):
        seq = [t for w in ids[max(0, i - window + 1):i + 1] for t in w]
        last = list(range(len(seq) - len(ids[i]), len(seq)))
        if wrap:                                                 # [CLS] words [SEP], read the last word
            seq, last = [tok.cls_token_id] + seq + [tok.sep_token_id], [p + 1 for p in last]
        jobs.append((seq, [(i, last)]))
    return jobs


def extract_words(model: str, words: list[str], *, window: int = 20, brainscore: bool = False,
                  device: str = "auto", dtype: str = "float32", batch_size: int = 8,
                  cache_dir: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """Toneva & Wehbe's word features -> (n_words, n_layers_encoder, hidden) float32: for word i, one forward
    pass over words i-window+1 .. i, the mean over word i's tokens of every layer, read as extract() reads
    them (T5: the encoder's layers, the first 1 + n_blocks of layer_names()). No token_type_ids. Windows
    are short, so a batch is bounded by its tokens only. Other arguments as extract()."""
    info, words = resolve(model), list(words)
    _check_texts(words, "words", "word")
    window, batch_size, device = _whole(window, "window", 1), _check_options(dtype, batch_size), check_device(device)
    ident = identity(info, dtype=dtype, brainscore=brainscore)
    path, key = _entry(cache_dir, info, identity=ident, kind="words", texts=words, window=window)

    def compute():
        tok, net, config = _load(info, ident["weights"], device, dtype, cache_dir, progress)
        kind = _kind(config)
        jobs = _word_jobs(tok, kind, words, window)
        encoder, kind = (net.get_encoder(), "encoder") if kind == "seq2seq" else (net, kind)
        with _Reader(_blocks(net, config)[:1], len(words), _post_attention(config, brainscore)) as reader:
            for _ in _run(encoder, kind, jobs, batch_size, reader=reader, cap_rows=False, progress=progress,
                          desc=info.name):
                pass
        return reader.out
    return _cached(path, key, compute)


# --------------------------------------------------------------------------- surprisal (Futrell2018)
# Reading-time predictions as the paper's 2023 Brain-Score computed them (brain-score/language 1041be4
# model_helpers/huggingface.py: digest_text, _tokenize_overflow_aware, estimate_reading_times). Word i is fed
# as prepare_context(words[:i + 1]), tokenized with truncation to the model's maximum length, in one forward
# pass; its surprisal is the summed -log2 p of the tokens the context gained since word i - 1.
def _word_inputs(tok, words, max_len, progress=True):
    """Brain-Score's per-word inputs -> [(window ids, n_targets)]: the truncated tokens of
    prepare_context(words[:i + 1]) and how many of its last tokens are word i's (0: no prediction), counted
    as _tokenize_overflow_aware counts them: the context's untruncated length is the kept tokens plus those
    in the tokenizer's overflow pieces, and the word's tokens are the window's positions from (previous
    length - overflow) on, with Python slice semantics. The first input that is all new loses its first
    token (nothing predicts it); a window of one token has no prediction (estimate_reading_times)."""
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
            raise ValueError(f"word {i} ({words[i]!r}) adds no tokens to its context under this tokenizer, so it "
                             "has no surprisal (Brain-Score gives it 0 bits): remove it or join it to a neighbour")
        inputs.append((ids, min(new, n - 1) if n > 1 else 0))
    return inputs


def _tokenized_whole(tok, words, max_len, progress=True, which=None):
    """Yield (window ids, overflow count) for the context of every word (or of the words `which`), each
    context tokenized whole with truncation, as Brain-Score does: O(n^2) in the text."""
    which = range(len(words)) if which is None else list(which)
    for s in tqdm(range(0, len(which), 256), desc="tokenizing", unit="x256", disable=None if progress else True):
        contexts = [prepare_context(words[:i + 1]) for i in which[s:s + 256]]
        for enc in tok(contexts, truncation=True, max_length=max_len).encodings:
            yield enc.ids, sum(len(o.ids) for o in enc.overflowing)


def _tokenized_by_word(tok, words, max_len) -> list | None:
    """What _tokenized_whole yields, from one tokenization of each word, in linear time; None when this
    tokenizer does not split the text at word boundaries. A context's tokens are then its words' tokens
    (each word with the space before it, as prepare_context puts it) framed by the special tokens;
    truncation keeps max_len - n_special of them, and the tokenizer returns the overflow in pieces of that
    size, each framed again. Checked on the whole text and on 20 contexts tokenized whole (spread over the
    text, and where it first overflows); any difference -> None."""
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
        n_pieces = (over + room - 1) // room          # overflow pieces, each framed by the special tokens
        out.append((pre + kept + post, over + (len(pre) + len(post)) * n_pieces))
    first_over = next((i for i, (_, over) in enumerate(out) if over), len(out) - 1)
    check = sorted({*np.linspace(0, len(words) - 1, 18).astype(int).tolist(), first_over,
                    min(first_over + 1, len(words) - 1)})
    if any(got != out[i] for i, got in zip(check, _tokenized_whole(tok, words, max_len, False, check))):
        return None
    return out


def _surprisal_jobs(inputs) -> list[tuple[list[int], list]]:
    """-> jobs [(window ids, [(word, positions of its target tokens)])]: one forward sequence per distinct
    window (T5, once the context overflows, keeps the same first tokens for every later word)."""
    jobs = {}
    for word, (ids, n_new) in enumerate(inputs):
        if n_new:
            jobs.setdefault(tuple(ids), []).append((word, list(range(len(ids) - n_new, len(ids)))))
    return [(list(ids), reads) for ids, reads in jobs.items()]


def _add_bits(bits: np.ndarray, batch, logits: torch.Tensor) -> None:
    """bits[word] = the summed -log2 p of the word's target tokens, each predicted at the position before it
    (estimate_reading_times: cross_entropy(..., reduction='sum') / log 2). logits: (batch, width, vocab)."""
    row, pos, target, word = [], [], [], []
    for r, (ids, reads) in enumerate(batch):
        for w, positions in reads:
            row += [r] * len(positions)
            pos += [p - 1 for p in positions]
            target += [ids[p] for p in positions]
            word += [w] * len(positions)
    dev = logits.device
    with torch.inference_mode():
        picked = logits[torch.tensor(row, device=dev), torch.tensor(pos, device=dev)].float()  # (n_reads, vocab)
        logp = torch.log_softmax(picked, dim=-1)[torch.arange(len(row), device=dev), torch.tensor(target, device=dev)]
    bits[np.unique(word)] = 0.0
    np.add.at(bits, word, (-logp / math.log(2)).cpu().numpy())


def surprisal(model: str, words: list[str], *, device: str = "auto", dtype: str = "float32", batch_size: int = 8,
              cache_dir: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """Surprisal in bits of every word given all the words before it -> (n_words,) float64, Brain-Score's
    per-word computation to float32 rounding; NaN where Brain-Score has no prediction (a word whose input
    is one token: the first word, unless it has several tokens or a BOS token). The words form one running
    context (Futrell2018's 10 stories are one list); each word's window is one sequence, batched. T5 as
    PR #194: the window goes to the encoder and, unshifted, as decoder_input_ids, and its tokenizer keeps
    its truncation side (right) and its </s>, which the new tokens then include. Arguments as extract()."""
    info, words = resolve(model), list(words)
    _check_texts(words, "words", "word", strip=True)
    batch_size, device = _check_options(dtype, batch_size), check_device(device)
    ident = identity(info, dtype=dtype)
    path, key = _entry(cache_dir, info, identity=ident, kind="surprisal", texts=words)

    def compute():
        tok, net, config = _load(info, ident["weights"], device, dtype, cache_dir, progress, lm_head=True)
        if not getattr(tok, "is_fast", False):
            raise ValueError(f"{info.name}: Brain-Score counts truncated tokens with a fast (Rust) tokenizer and "
                             "none loaded: save the model's tokenizer.json beside it")
        jobs = _surprisal_jobs(_word_inputs(tok, words, _max_length(tok, config), progress))
        bits = np.full(len(words), np.nan)
        for batch, out in _run(net, _kind(config), jobs, batch_size, progress=progress, desc=info.name):
            _add_bits(bits, batch, out.logits)
        return bits
    return _cached(path, key, compute, nan_ok=True)
