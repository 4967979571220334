"""Layer-wise activations of HuggingFace language models, read the way Brain-Score reads them.

For stimulus i of a context group (passage, story) the model sees the group's texts up to and
including i, joined by single spaces (no space before .,!?;:, empty parts dropped), truncated on
the left to the model's maximum length. The representation is the last token of every layer's
output: the embeddings, then every block (T5: encoder embeddings + blocks, then decoder embeddings
+ blocks), as Brain-Score's forward hooks on the blocks read them (before any final norm).
Decoder-only models run each group once and gather the last token of every stimulus: under causal
attention this is the same computation as one pass per prefix. T5 and BERT-like encoders see the
whole prefix, so they run one pass per prefix, batched. MODELS holds the paper's 25 models and the
GPT-2 appendix pairs; any hub id or local directory also works.

Leaves out: scoring (brainalign.py), datasets (data.py), generation, quantisation, sub-word pooling.
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
CACHE_FORMAT = "brainalign-activations-v1"  # bump when the extraction semantics change


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
    appendix: bool = False          # GPT-2 appendix pairs (not in the paper's 25)
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
alpaca-7b           llama tatsu-lab/alpaca-7b-wdiff           7e9   32 llama-7b    .420 .167 .118 .235 4.201 .404 .328
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
"""
_LLAMA = ("Meta's original LLaMA-1 weights, converted to transformers and re-uploaded by the community "
          "(Meta never put LLaMA-1 on the hub)")
_NOTES = {"llama-7b": _LLAMA, "llama-13b": _LLAMA, "llama-33b": _LLAMA + "; Meta named it LLaMA-30B (32.5B parameters)",
          "alpaca-7b": "Stanford's weight diff on LLaMA-7B; merge_delta() adds it to huggyllama/llama-7b",
          "stable-vicuna-13b": "CarperAI's delta on LLaMA-13B; merge_delta() adds it to huggyllama/llama-13b"}
_DELTA_BASES = {"alpaca-7b": "huggyllama/llama-7b", "stable-vicuna-13b": "huggyllama/llama-13b"}
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
    appendix = family == "gpt2"
    return ModelInfo(name, hub_id, family, float(params), int(n_layers), None if base == "-" else base,
                     note=_NOTES.get(name, "appendix: the paper gives only the average" if appendix else ""),
                     delta_base=_DELTA_BASES.get(name), appendix=appendix, paper=tuple(v[:4]),
                     nwp_loss=v[4], mmlu=v[5], bbh=v[6], paper_futrell=_TABLE9.get(name))


MODELS: dict[str, ModelInfo] = {m.name: m for m in map(_row, _TABLE.strip().splitlines())}


def resolve(name: str) -> ModelInfo:
    """A registry key, a local model directory, or any hub id ("owner/name") -> ModelInfo."""
    if name in MODELS:
        return MODELS[name]
    path = Path(name).expanduser()
    if path.is_dir():
        cfg = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else {}
        n = cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("num_layers") or 0
        return ModelInfo(name, str(path), cfg.get("model_type", ""), float("nan"),
                         n + cfg.get("num_decoder_layers", 0), None, note="local directory")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return ModelInfo(name, name, "", float("nan"), 0, None, note="hub id, not in the registry")
    raise ValueError(f"unknown model {name!r}. Registry: {', '.join(MODELS)}. "
                     "Any hub id (owner/name) or local model directory also works.")


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


def _device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if device not in ("cpu", "mps", "map") and not re.fullmatch(r"cuda(:\d+)?", device):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N, mps, "
                         "or map (device_map='auto' over all GPUs, needs accelerate)")
    if device not in ("cpu", "mps") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available here: use device='auto' or 'cpu'")
    if device == "map" and not importlib.util.find_spec("accelerate"):
        raise ValueError("device 'map' (device_map='auto') needs accelerate: pip install accelerate")
    return device


def _dtype(dtype: str, device: str, model_type: str) -> torch.dtype:
    """auto: float32 on CPU; bf16 on GPUs that have it, else fp16 (float32 for T5, which overflows in fp16)."""
    if dtype != "auto" or device == "cpu":
        return _DTYPES.get(dtype, torch.float32)
    if device != "mps" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32 if model_type in ("t5", "mt5", "umt5") else torch.float16


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
    the delta's dtype. Written once to out_dir (temp dir + rename), reused afterwards."""
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
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=out_dir.name + ".tmp"))
    d.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out_dir)
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


def _load(info: ModelInfo, revision, model_dir, device: str, dtype: str, cache_dir, progress=True):
    """-> (tokenizer, model in eval mode, config). Delta releases are merged first (once)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    source, kw = str(model_dir or info.hub_id), {"revision": revision} if revision else {}
    with _quiet(progress):
        if info.delta_base and not model_dir:
            merged = Path(cache_dir or Path.home() / ".cache" / "brainalign", "merged", info.name, revision or "main")
            source, kw = str(merge_delta(info.delta_base, info.hub_id, merged, revision)), {}
        try:
            config = AutoConfig.from_pretrained(source, **kw)
            load = {_DTYPE_KW: _dtype(dtype, device, config.model_type)}
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


def _stacks(config) -> list[tuple[str, int]]:
    """-> [(stack name, number of blocks)]: one stack, or encoder and decoder for seq2seq."""
    if _kind(config) != "seq2seq":
        return [("", config.num_hidden_layers)]
    return [("encoder", config.num_hidden_layers),
            ("decoder", getattr(config, "num_decoder_layers", None) or config.decoder_layers)]


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


def layer_names(model: str, model_dir: str | Path | None = None, revision: str | None = None) -> list[str]:
    """Names of extract()'s output layers, in order (reads the model's config only)."""
    from transformers import AutoConfig
    source = str(model_dir or resolve(model).hub_id)
    try:
        config = AutoConfig.from_pretrained(source, **({"revision": revision} if revision else {}))
    except Exception as err:
        raise OSError(_fetch_help(source, err)) from err
    return [f"{name}.{x}".lstrip(".") for name, n in _stacks(config)
            for x in ["embeddings"] + [f"block.{j}" for j in range(n)]]


# --------------------------------------------------------------------------- running
def _run(model, config, kind, jobs, n_stimuli, batch_size, progress, desc) -> np.ndarray:
    """Run the jobs in length-sorted, right-padded batches; hooks copy out the rows to read.
    -> (n_stimuli, n_layers_out, hidden) float32. Only one layer's hidden states live at a time."""
    out, seen, now = None, np.zeros(n_stimuli, bool), {}
    stacks = _blocks(model, config)
    n_out = sum(len(blocks) + 1 for blocks in stacks)

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
            hooks.append(block.register_forward_hook(
                lambda m, a, o, l=layer + 1 + j: record(l, o[0] if isinstance(o, tuple) else o)))
        layer += len(blocks) + 1

    pad = getattr(config, "pad_token_id", None) or 0
    dev = model.get_input_embeddings().weight.device
    batches = [[]]  # similar lengths together: at most batch_size sequences and batch_size * 512 padded tokens
    for job in sorted(jobs, key=lambda j: len(j[0])):
        if batches[-1] and (len(batches[-1]) == batch_size or (len(batches[-1]) + 1) * len(job[0]) > batch_size * 512):
            batches.append([])
        batches[-1].append(job)
    try:
        for batch in tqdm(batches, desc=desc, unit="batch", disable=None if progress else True):
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


# --------------------------------------------------------------------------- cache
def _fingerprint(texts, groups, window) -> str:
    return hashlib.sha256(json.dumps([CACHE_FORMAT, texts, groups, window], default=str).encode()).hexdigest()


def _cache_path(cache_dir, info, revision, dataset_key) -> Path:
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "--", s).strip("-.") or "_"  # noqa: E731
    return Path(cache_dir, "activations", safe(info.name), safe(revision or "default"), f"{safe(dataset_key)}.npz")


def _read_cache(path: Path, key: str) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            if str(f["fingerprint"]) == key:
                return f["activations"]
        log.warning("stale activation cache %s (texts, groups or window changed): recomputing", path)
    except (OSError, ValueError, KeyError) as err:
        log.warning("unreadable activation cache %s (%s): recomputing", path, err)
    return None


def _write_cache(path: Path, key: str, acts: np.ndarray, **meta) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, activations=acts, fingerprint=key, **{k: str(v) for k, v in meta.items()})
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
    if dtype != "auto" and dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use auto, {', '.join(_DTYPES)}")


_LAST: dict = {}  # the most recently loaded (tokenizer, model, config); _LAST.clear() frees it


def extract(model: str, texts: list[str], groups: list[str], *, context_window: int = 0,
            device: str = "auto", dtype: str = "auto", batch_size: int = 8,
            cache_dir: str | Path | None = None, dataset_key: str = "", revision: str | None = None,
            model_dir: str | Path | None = None, progress: bool = True, one_pass: bool = True) -> np.ndarray:
    """Last-token representation of every stimulus in every layer -> (n_stimuli, n_layers_out, hidden) float32.

    model: registry key, hub id or local directory (model_dir: local copy of the weights to use instead;
    for delta releases, the already merged weights). groups: context group per stimulus; the model sees
    the group's texts up to stimulus i (context_window k > 0: at most the k most recent of them).
    device: auto (cuda > mps > cpu), cpu, cuda[:N], mps, or map (device_map='auto'). dtype: auto
    (fp32 on CPU, bf16/fp16 on GPU), float32, float16, bfloat16. batch_size: sequences per forward pass
    (similar lengths, at most batch_size * 512 padded tokens). With cache_dir and dataset_key the
    result is cached in <cache_dir>/activations/<model>/<revision>/<dataset_key>.npz; a cache whose
    texts, groups or window differ is recomputed. one_pass=False forces one pass per stimulus
    (Brain-Score's way; for checks and benchmarks)."""
    info, texts, groups = resolve(model), list(texts), list(groups)
    _check(texts, groups, context_window, batch_size, dtype)
    key = _fingerprint(texts, groups, context_window)
    path = _cache_path(cache_dir, info, revision, dataset_key) if cache_dir and dataset_key else None
    if path and (cached := _read_cache(path, key)) is not None:
        return cached
    device = _device(device)
    loaded = (info.hub_id, revision, str(model_dir), device, dtype)
    if loaded not in _LAST:  # keep one model loaded: a run scores it on every dataset before the next
        _LAST.clear()
        _LAST[loaded] = _load(info, revision, model_dir, device, dtype, cache_dir, progress)
    tok, net, config = _LAST[loaded]
    kind = _kind(config)
    contexts, chains = _contexts(texts, groups, context_window)
    jobs = _plan(tok, kind, contexts, chains, _max_length(tok, config), one_pass)
    acts = _run(net, config, kind, jobs, len(texts), batch_size, progress, desc=info.name)
    if path:
        _write_cache(path, key, acts, model=info.hub_id, revision=revision or "", dtype=net.dtype)
    return acts


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
    source, kw = str(model_dir or info.hub_id), {"revision": revision} if revision else {}
    with _quiet(progress):
        if info.delta_base and not model_dir:
            merged = Path(cache_dir or Path.home() / ".cache" / "brainalign", "merged", info.name, revision or "main")
            source, kw = str(merge_delta(info.delta_base, info.hub_id, merged, revision)), {}
        try:
            config = AutoConfig.from_pretrained(source, **kw)
        except Exception as err:
            raise OSError(_fetch_help(source, err)) from err
        if _kind(config) == "encoder":
            raise ValueError(f"{source} is a {config.model_type} encoder: it has no left-to-right language-model "
                             "head, so it gives no surprisal. Score reading times with a causal LM or T5.")
        load = {_DTYPE_KW: _dtype(dtype, device, config.model_type)}
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
    batches = [[]]  # as in _run: at most batch_size sequences and batch_size * 512 padded tokens
    for job in sorted(jobs, key=lambda j: len(j[0])):
        if batches[-1] and (len(batches[-1]) == batch_size or (len(batches[-1]) + 1) * len(job[0]) > batch_size * 512):
            batches.append([])
        batches[-1].append(job)
    for batch in tqdm(batches if jobs else [], desc=desc, unit="batch", disable=None if progress else True):
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


def surprisal(model: str, words: list[str], *, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
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
    if dtype != "auto" and dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use auto, {', '.join(_DTYPES)}")
    device = _device(device)
    loaded = ("lm", info.hub_id, revision, str(model_dir), device, dtype)
    if loaded not in _LAST:  # one model in memory at a time, shared with extract()
        _LAST.clear()
        _LAST[loaded] = _load_lm(info, revision, model_dir, device, dtype, cache_dir, progress)
    tok, net, config = _LAST[loaded]
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
