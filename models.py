"""Layer activations (extract), Toneva & Wehbe's word features (extract_words, Wehbe2014) and surprisal
(Futrell2018) of HuggingFace language models, as the paper's code computed them: the authors' Brain-Score PR
#194 (brain-score/language 91c88b1), or Brain-Score 2.3.0's model side (brainscore=True). MODELS holds the
paper's 25 models and the GPT-2 appendix pairs; any hub id or model folder also works.
Leaves out: scoring (brainalign.py), datasets (data.py), generation, quantisation, hub revisions.
Run: python -c "import models; print(models.extract('gpt2', ['Hi there.', 'Bye.'], ['a', 'a']).shape)"
"""
from __future__ import annotations

import hashlib
import json
import logging
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
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

import data

log = logging.getLogger(__name__)
FORMAT = "brainalign-activations-v3"  # bump when what extract, extract_words or surprisal compute changes


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
    note: str = ""                 # substitutes and deltas: what the hub id holds


# Vanilla: name, hub id, family, parameters, layers, Table 5 (Pereira, Blank, Wehbe, Average), Table 9.
# Indented, tuned from it: name, hub id, Tables 5, 9, 7 (loss, MMLU, BBH). note:/delta: qualify the row above.
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
    note: Meta's LLaMA-1, converted by the community
  alpaca-7b           chavinlo/alpaca-native                          .420 .167 .118 .235 .206 4.201 .404 .328
    note: a replication of Stanford Alpaca, the authors' alpaca-7b (PR #194 91c88b1 models/llama)
  vicuna-7b           lmsys/vicuna-7b-v1.3                            .399 .152 .119 .223 .205 4.387 .472 .331
llama-13b             huggyllama/llama-13b             llama 13e9  40 .412 .133 .115 .220 .184
    note: Meta's LLaMA-1, converted by the community
  vicuna-13b          lmsys/vicuna-13b-v1.3                           .423 .148 .116 .229 .184 4.130 .521 .387
  stable-vicuna-13b   CarperAI/stable-vicuna-13b-delta                .415 .144 .115 .225 .196 4.623 .495 .380
    delta: a weight difference on LLaMA-13B, added by merge_delta()
llama-33b             huggyllama/llama-30b             llama 33e9  60 .426 .145 .109 .227 .158
    note: Meta's LLaMA-30B (32.5B parameters; the paper says 33B), converted by the community
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
            delta_base = vanilla.hub_id if name == "delta:" else None
            rows[-1] = replace(rows[-1], note=" ".join(fields), delta_base=delta_base)
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


def resolve(name: str) -> ModelInfo:
    """A registry key, hub id ("owner/name") or model folder (named "<folder name>@<hash of its path>")."""
    choices = f"give a registry name ({', '.join(MODELS)}), a hub id (owner/name) or a local model folder"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name {name!r} is empty: {choices}")
    path = Path(name).expanduser()
    if name not in MODELS and path.is_dir():
        path, config = path.resolve(), path / "config.json"
        try:
            family = json.loads(config.read_text()).get("model_type", "")
        except (OSError, ValueError, AttributeError) as err:
            raise ValueError(f"{config} is not a model config ({type(err).__name__}: {err}): a model folder "
                             "holds config.json, tokenizer and weights, as save_pretrained writes") from None
        name = f"{path.name or 'model'}@{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        family = family if family in ("t5", "llama", "gpt2") else ""
        return ModelInfo(name, str(path), family, np.nan, 0, None, note=f"local folder {path}")
    if known := [m for m in MODELS.values() if name in (m.name, m.hub_id)]:
        return known[0]
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", name):
        return ModelInfo(name, name, "", np.nan, 0, None, note="hub id, not in the registry")
    if path.exists() or name.startswith((".", "~")) or "/" in name or "\\" in name:
        raise ValueError(f"no such folder {name}{' (it is a file)' if path.exists() else ''}: give the "
                         "folder that holds the model's config.json and weights, or a hub id (owner/name)")
    raise ValueError(f"unknown model {name!r}: {choices}")


def identity(info: ModelInfo, *, dtype: str = "float32", brainscore: bool = False) -> dict:
    """What decides a model's outputs, known with no network and no load; keys every cache entry."""
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use {', '.join(_DTYPES)}")
    weights = {"hub_id": info.hub_id, "revision": "main", "delta_on": info.delta_base}
    if os.path.isabs(info.hub_id) and not info.delta_base:   # a folder: config, files' names, sizes, times
        digest = hashlib.sha256(Path(info.hub_id, "config.json").read_bytes())
        for f in sorted(p for p in Path(info.hub_id).iterdir() if p.is_file()):
            digest.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns};".encode())
        weights = {"path": info.hub_id, "files": digest.hexdigest()[:16]}
    return {"format": FORMAT, "weights": weights, "dtype": dtype,
            "readout": "block" if brainscore else "paper", "token_type_ids": "pass" if brainscore else "drop"}


def _begin(model, texts, one, dtype, batch_size, device, brainscore=False, *, strip=False, window=(0, 0)):
    """Checks before loading -> (info, texts, identity, batch_size, window, device); window: (it, min)."""
    info, texts, plural = resolve(model), list(texts), "texts" if one == "stimulus" else "words"
    if not texts:
        raise ValueError(f"{plural} is empty: give at least one {one}, in presentation order")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip() or (strip and t != t.strip()):
            rule = "text and no surrounding whitespace" if strip else "text: drop it or fill it in"
            raise ValueError(f"{one} {i} is {t!r}: every {one} needs {rule}")
    for what, value, least in (("window", *window), ("batch_size", batch_size, 1)):  # numpy integers too
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{what} must be a whole number >= {least}, got {value!r}")
    ident = identity(info, dtype=dtype, brainscore=brainscore)
    return info, texts, ident, int(batch_size), int(window[0]), check_device(device)


def check_device(device: str) -> str:
    """The torch device for a --device value, or a ValueError that says what to use instead."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if device not in ("cpu", "mps", "map") and not re.fullmatch(r"cuda(:\d+)?", str(device)):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N, mps or map (all GPUs)")
    hw = {"cpu": None, "mps": "Apple's MPS"}.get(device, "CUDA")
    if hw and not (torch.backends.mps if device == "mps" else torch.cuda).is_available():
        raise ValueError(f"device {device!r} asked for but {hw} is not available here: use 'auto' or 'cpu'")
    if device == "map" and not transformers.utils.is_accelerate_available():
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
    """-> jobs [(token ids, [(stimulus, [position])])]: a causal model runs a chain once, read at the last
    token of each stimulus whose tokens are a prefix of it (causal attention: one pass per prefix)."""
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
        alone += sorted(set(chain) - {i for i, _ in reads})
    if alone:
        ids = tok([contexts[i] for i in alone], truncation=True, max_length=max_len)["input_ids"]
        jobs += [(x, [(i, [len(x) - 1])]) for i, x in zip(alone, ids)]
    for x, reads in jobs:
        if not x:
            raise ValueError(f"stimulus {reads[0][0]} tokenizes to nothing: {contexts[reads[0][0]]!r}")
    return jobs


# --------------------------------------------------------------------------- loading
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_KEPT: dict = {}  # the one model kept loaded: key -> (tokenizer, model, config); _KEPT.clear() frees it
_ENCODERS = set("bert roberta distilbert albert electra deberta deberta-v2 xlm-roberta mpnet".split())
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "spiece.model")


def _kind(config) -> str:
    """'seq2seq' (T5), 'encoder' (BERT-like, bidirectional) or 'causal' (decoder-only)."""
    encoder = config.model_type in _ENCODERS
    return "seq2seq" if config.is_encoder_decoder else "encoder" if encoder else "causal"


@contextmanager
def _loading(source: str):
    """Turn any error of what transformers loads from source into an OSError that says what to do."""
    try:
        yield
    except Exception as err:
        todo = (f"check the name at https://huggingface.co/{source} (no folder {source} exists here either); "
                "for a gated model accept its licence there and run `hf auth login` or set HF_TOKEN; "
                "offline, give a local folder as the model name, or set HF_HUB_OFFLINE=1 to use HF's cache")
        if Path(source).is_dir():
            todo = f"{source} must hold config.json, the tokenizer and the weights, as save_pretrained writes"
        raise OSError(f"could not load {source!r}: {type(err).__name__}: {' '.join(str(err).split())} "
                      f"What to do: {todo}") from err


def merge_delta(base: str, delta: str, out_dir: str | Path, revision: str | None = None) -> Path:
    """base + delta, summed in float32, in the delta's dtype; new vocabulary rows (StableVicuna's [PAD]) from
    the mean base row (Stanford Alpaca's recovery recipe). Saved once; another job's finished merge wins."""
    out_dir, auto = Path(out_dir), transformers.AutoModelForCausalLM
    if (out_dir / "config.json").exists():
        return out_dir
    log.warning("merging %s + %s into %s (once)", base, delta, out_dir)
    with _loading(f"{base} + {delta}"):
        b = auto.from_pretrained(base, torch_dtype="auto").state_dict()
        d = auto.from_pretrained(delta, revision=revision, torch_dtype="auto")
        tok = transformers.AutoTokenizer.from_pretrained(delta, revision=revision)  # deltas ship one
    with torch.no_grad():
        for name, p in d.state_dict().items():
            q = b[name].float()
            if q.shape != p.shape:  # rows added to the vocabulary
                q = torch.cat([q, q.mean(0, keepdim=True).expand(p.shape[0] - q.shape[0], *q.shape[1:])])
            p.copy_((p.float() + q).to(p.dtype))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
    try:
        d.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, out_dir)           # atomic; fails if another job's merge is already there
    except OSError:
        if not (out_dir / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _load(info: ModelInfo, weights: dict, device: str, dtype: str, cache_dir, lm_head=False):
    """-> (tokenizer, model in eval mode, config), with its LM head if lm_head, kept until another is loaded;
    a delta merged once into <cache_dir>/merged. Truncation: to model_max_length, capped by the positions, on
    the left (Brain-Score's HuggingfaceSubject); T5's, for surprisal, right (PR #194, 8ace8f3 models/t5)."""
    key = (info.name, json.dumps(weights, sort_keys=True), device, dtype, lm_head, str(cache_dir))
    if key in _KEPT:
        return _KEPT[key]
    _KEPT.clear()
    source = info.hub_id
    if info.delta_base:
        folder = Path(cache_dir or Path.home() / ".cache" / "brainalign", "merged", info.name, "main")
        source = str(merge_delta(info.delta_base, info.hub_id, folder))
    if Path(source).is_dir() and not any((Path(source) / f).exists() for f in _TOKENIZER_FILES):
        raise OSError(f"{source} has no tokenizer files (one of {', '.join(_TOKENIZER_FILES)}): save them "
                      "there with tokenizer.save_pretrained(FOLDER), or copy them from the model's hub page")
    with _loading(source):
        config = transformers.AutoConfig.from_pretrained(source)
    kind, auto = _kind(config), transformers.AutoModel
    if lm_head and kind == "encoder":
        raise ValueError(f"{source} is a {config.model_type} encoder: it has no left-to-right language-model "
                         "head, so it gives no surprisal. Score reading times with a causal LM or T5.")
    if lm_head:
        auto = transformers.AutoModelForSeq2SeqLM if kind == "seq2seq" else transformers.AutoModelForCausalLM
    transformers.logging.set_verbosity_error()        # AutoModel drops the LM head on purpose: no report
    with _loading(source):
        tok = transformers.AutoTokenizer.from_pretrained(source)
        net, report = auto.from_pretrained(source, output_loading_info=True, torch_dtype=_DTYPES[dtype],
                                           **({"device_map": "auto"} if device == "map" else {}))
    if lm_head and report["missing_keys"]:
        raise ValueError(f"{source} lacks trained weights for {', '.join(sorted(report['missing_keys']))}: "
                         "saved without its language-model head, it gives no surprisal; load the one with it")
    positions = getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 0)
    limits = [x for x in (tok.model_max_length, kind != "seq2seq" and positions) if 0 < x < 1e7]
    tok.model_max_length = int(min(limits or [10 ** 9]))
    if not lm_head or kind == "causal":
        tok.truncation_side = "left"
    _KEPT[key] = tok, (net if device == "map" else net.to(device)).eval(), config
    return _KEPT[key]


# --------------------------------------------------------------------------- layers
def _layers(config, brainscore: bool, net=None) -> list[tuple[str, torch.nn.Module | None, bool]]:
    """extract()'s layers -> [(name, module to hook (in net, if given), pre-hook?)]. Per stack (T5: encoder,
    decoder), the embeddings (the first block's input), then every block's output; but PR #194 (91c88b1
    models/llama) reads LLaMA, Alpaca, Vicuna at layers.N.post_attention_layernorm (T5, GPT-2: the output)."""
    post, stacks = not brainscore and config.model_type == "llama", [("", config.num_hidden_layers)]
    if _kind(config) == "seq2seq":
        n_decoder = getattr(config, "num_decoder_layers", None) or config.decoder_layers
        stacks = [("encoder", config.num_hidden_layers), ("decoder", n_decoder)]
    layers = []
    for stack, n in stacks:
        blocks, prefix = [None] * n, f"{stack}." if stack else ""
        if net is not None:
            module = getattr(net, f"get_{stack}")() if stack else net
            lists = [m for m in module.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
            if not lists:
                raise RuntimeError(f"cannot find the {n} blocks of {type(module).__name__}")
            blocks = lists[0]
        layers.append((f"{prefix}embeddings", blocks[0], True))
        for j, b in enumerate(blocks):
            read = b.post_attention_layernorm if post and b is not None else b
            layers.append((f"{prefix}block.{j}{'.post_attention_layernorm' if post else ''}", read, False))
    return layers


def layer_names(model: str, *, brainscore: bool = False) -> list[str]:
    """Names of extract()'s layers, from the model's config alone (no weights are loaded)."""
    source = resolve(model).hub_id
    with _loading(source):
        config = transformers.AutoConfig.from_pretrained(source)
    return [name for name, _, _ in _layers(config, brainscore)]


# --------------------------------------------------------------------------- running and caching
def _run(net, kind: str, jobs, batch_size: int, *, before=None, token_types=False, cap_rows=True,
         progress=True, desc=""):
    """Yield (batch, output) for jobs [(token ids, reads)] by length, in right-padded batches of <= batch_size
    * 512 tokens and (cap_rows) batch_size sequences, inputs as the authors' code builds them: no attention
    mask for a causal model (it cannot see right padding); T5's context also as decoder_input_ids (PR 194)."""
    batches = []
    for job in sorted(jobs, key=lambda j: len(j[0])):
        full = bool(batches) and cap_rows and len(batches[-1]) == batch_size
        if not batches or full or (len(batches[-1]) + 1) * len(job[0]) > batch_size * 512:
            batches.append([])
        batches[-1].append(job)
    pad, dev = getattr(net.config, "pad_token_id", None) or 0, net.get_input_embeddings().weight.device
    for batch in tqdm(batches, desc=desc, unit="batch", disable=None if progress else True):
        ids = pad_sequence([torch.tensor(x) for x, _ in batch], True, pad).to(dev)          # (batch, width)
        mask = pad_sequence([torch.ones(len(x), dtype=torch.long) for x, _ in batch], True).to(dev)
        inputs = {"input_ids": ids} if kind == "causal" else {"input_ids": ids, "attention_mask": mask}
        if token_types:                                      # zeros, as a tokenizer gives them for one text
            inputs["token_type_ids"] = torch.zeros_like(ids)
        if kind == "seq2seq":
            inputs.update(decoder_input_ids=ids, decoder_attention_mask=mask)
        if kind != "encoder":
            inputs["use_cache"] = False
        if before:
            before(batch)
        with torch.inference_mode():
            out = net(**inputs)
        yield batch, out


def _read(net, kind, layers, jobs, n_rows: int, batch_size: int, **run_options) -> np.ndarray:
    """Run jobs [(token ids, [(row, positions)])] -> (n_rows, n_layers, hidden) float32: per read, the mean
    over its positions of each of _layers()'s layers, copied out by hooks as they run (one at a time)."""
    now = {}

    def select(batch):          # (reads, k) indices into the flat (batch * width) states, and their weights
        width = max(len(x) for x, _ in batch)
        reads = [(r * width, row, ps) for r, (_, rs) in enumerate(batch) for row, ps in rs]
        k = max(len(ps) for *_, ps in reads)
        now["rows"] = [row for _, row, _ in reads]
        now["index"] = torch.tensor([[o + p for p in ps] + [o + ps[0]] * (k - len(ps)) for o, _, ps in reads])
        now["weight"] = torch.tensor([[1 / len(ps)] * len(ps) + [0.0] * (k - len(ps)) for *_, ps in reads])

    def record(layer, pre, module, args, more):      # more: a pre-hook's kwargs, or a hook's output
        if pre:                                       # transformers passes the input by position or keyword
            h = args[0] if args else more["hidden_states"]
        else:
            h = more[0] if isinstance(more, tuple) else more
        picked = h.reshape(-1, h.shape[-1])[now["index"].to(h.device)].float()     # (reads, k, hidden)
        if "out" not in now:
            now["out"] = np.zeros((n_rows, len(layers), h.shape[-1]), np.float32)
        now["out"][now["rows"], layer] = (picked * now["weight"].to(h.device)[..., None]).sum(1).cpu().numpy()

    hooks = []
    for i, (_, module, pre) in enumerate(layers):
        hook = module.register_forward_pre_hook if pre else module.register_forward_hook
        hooks.append(hook(partial(record, i, pre), **({"with_kwargs": True} if pre else {})))
    try:
        for _ in _run(net, kind, jobs, batch_size, before=select, **run_options):
            pass
    finally:
        for h in hooks:
            h.remove()
    return now["out"]


def _cached(cache_dir, info: ModelInfo, ident: dict, compute, nan_ok: bool = False, **what) -> np.ndarray:
    """compute()'s array, kept in <cache_dir>/activations/<model>/<hash of ident and what>.npz. A file that
    cannot be read, holds another key, or inf (or NaN, unless nan_ok) is moved aside and recomputed."""
    def bad(values):
        return np.isinf(values).any() or (not nan_ok and np.isnan(values).any())
    key = hashlib.sha256(json.dumps({"identity": ident, **what}, sort_keys=True).encode()).hexdigest()[:16]
    folder = re.sub(r"[^A-Za-z0-9._@-]+", "--", info.name).strip("-.") or "_"      # file-name-safe, never ..
    path = Path(cache_dir, "activations", folder, f"{key}.npz") if cache_dir else None
    if path and path.exists():
        try:
            with np.load(path) as f:
                values, stored = f["values"], str(f["key"])
            if stored == key and not bad(values):
                return values
            raise ValueError("another key" if stored != key else "inf or NaN values")
        except Exception as err:                     # BadZipFile, EOFError, OSError, KeyError, ValueError
            aside = data.unique(path.with_name(path.name + ".corrupt"))
            os.replace(path, aside)
            log.warning("unreadable cache %s (%r): moved aside to %s, recomputing", path, err, aside.name)
    values = compute()
    if bad(values):
        raise ValueError("the model gave inf or NaN: an overflow (with float16 or bfloat16, use float32)")
    if path:
        data.write_atomic(path, partial(np.savez, values=values, key=key))
    return values


# --------------------------------------------------------------------------- extract
def extract(model: str, texts: list[str], groups: list[str], *, window: int = 0, brainscore: bool = False,
            device: str = "auto", dtype: str = "float32", batch_size: int = 8,
            cache_dir: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """Last token of each stimulus's context in each layer -> (n_stimuli, n_layers, hidden) float32; context:
    its group's texts up to it (window k > 0: the k last). device: auto, cpu, cuda[:N], mps or map (all GPUs).
    dtype: float32 (the authors set none), float16 or bfloat16. cache_dir: see _cached."""
    info, texts, ident, batch_size, window, device = _begin(model, texts, "stimulus", dtype, batch_size,
                                                            device, brainscore, window=(window, 0))
    if len(groups := list(groups)) != len(texts):
        raise ValueError(f"texts and groups differ in length: {len(texts)} texts, {len(groups)} groups")

    def compute():
        tok, net, config = _load(info, ident["weights"], device, dtype, cache_dir)
        jobs = _plan(tok, _kind(config), *_contexts(texts, groups, window), tok.model_max_length)
        # Brain-Score passes token_type_ids a tokenizer declares; PR #194 (91c88b1 huggingface.py) pops them
        token_types = brainscore and "token_type_ids" in tok.model_input_names
        return _read(net, _kind(config), _layers(config, brainscore, net), jobs, len(texts), batch_size,
                     token_types=token_types, progress=progress, desc=info.name)
    return _cached(cache_dir, info, ident, compute, kind="layers", texts=texts, groups=groups, window=window)


# --------------------------------------------------------------------------- word features (Wehbe2014)

def extract_words(model: str, words: list[str], *, window: int = 20, brainscore: bool = False,
                  device: str = "auto", dtype: str = "float32", batch_size: int = 8,
                  cache_dir: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """Toneva & Wehbe's word features -> (n_words, n_layers_encoder, hidden) float32 (mtoneva/
    brain_language_nlp 0f519a0 extract_nlp_features.py, utils/bert_utils.py; awwkl/
    brain_language_summarization f341823 utils/models/long_t5_utils.py): word i's, the mean over its tokens
    of each layer (T5: the encoder's) in a pass over words i-window+1 .. i, each tokenized alone, no special
    tokens (BERT: [CLS] .. [SEP]). Arguments as extract()."""
    info, words, ident, batch_size, window, device = _begin(model, words, "word", dtype, batch_size, device,
                                                            brainscore, window=(window, 1))

    def compute():
        tok, net, config = _load(info, ident["weights"], device, dtype, cache_dir)
        ids, kind, jobs, remove = [], _kind(config), [], (",", '"', "@")  # extract_nlp_features remove_chars
        for i, word in enumerate(words):                       # bert_utils.predict_bert_embeddings
            ids.append(tok.convert_tokens_to_ids([t for t in tok.tokenize(word) if t not in remove]))
            if not ids[-1]:
                raise ValueError(f"word {i} ({word!r}) has no tokens left once {remove} are dropped; "
                                 "drop the word from the stimuli or merge it into its neighbour")
        wrap = kind == "encoder" and tok.cls_token_id is not None and tok.sep_token_id is not None
        cls, sep = ([tok.cls_token_id], [tok.sep_token_id]) if wrap else ([], [])
        for i in range(len(words)):
            seq = cls + [t for w in ids[max(0, i - window + 1):i + 1] for t in w] + sep
            jobs.append((seq, [(i, list(range(len(seq) - len(sep) - len(ids[i]), len(seq) - len(sep))))]))
        layers = [x for x in _layers(config, brainscore, net) if not x[0].startswith("decoder.")]
        encoder, kind = (net.get_encoder(), "encoder") if kind == "seq2seq" else (net, kind)
        return _read(encoder, kind, layers, jobs, len(words), batch_size, cap_rows=False, progress=progress,
                     desc=info.name)
    return _cached(cache_dir, info, ident, compute, kind="words", texts=words, window=window)


# --------------------------------------------------------------------------- surprisal (Futrell2018)
def _word_inputs(tok, words, max_len, progress=True):
    """Brain-Score's per-word inputs -> [(window ids, n_targets)], n_targets as _tokenize_overflow_aware
    (brain-score/language 1041be4 model_helpers/huggingface.py) counts them: the window's positions from
    (previous untruncated length - overflow) on, Python slice semantics; none for a one-token window."""
    tokenized = _tokenized_by_word(tok, words, max_len)
    if tokenized is None:
        log.warning("the tokenizer does not split the text at words: %d contexts tokenized whole", len(words))
        tokenized = _tokenized_whole(tok, words, max_len, progress)
    inputs, previous = [], 0
    for i, (ids, overflow) in enumerate(tokenized):
        new = min(len(range(len(ids))[previous - overflow:]), len(ids) - 1)  # ids[..., previous - overflow:]
        if len(ids) > 1 and new == 0:
            raise ValueError(f"word {i} ({words[i]!r}) adds no tokens to its context under this tokenizer, "
                             "so it has no surprisal (Brain-Score gives it 0 bits): remove it or join it")
        inputs.append((ids, max(new, 0)))
        previous = len(ids) + overflow
    return inputs


def _tokenized_whole(tok, words, max_len, progress=True, which=None):
    """Yield (window ids, overflow count) of every word's context (or the words `which`), tokenized whole."""
    which = range(len(words)) if which is None else list(which)
    for s in tqdm(range(0, len(which), 256), "tokenizing", unit="x256", disable=None if progress else True):
        contexts = [prepare_context(words[:i + 1]) for i in which[s:s + 256]]
        for enc in tok(contexts, truncation=True, max_length=max_len).encodings:
            yield enc.ids, sum(len(o.ids) for o in enc.overflowing)


def _tokenized_by_word(tok, words, max_len) -> list | None:
    """_tokenized_whole's result in linear time, or None if the tokenizer does not split the text at words: a
    context is its words' tokens, `room` of them kept, framed by special tokens, as each overflow piece is."""
    pieces = [w if i == 0 or w[0] in ".,!?;:" else " " + w for i, w in enumerate(words)]
    per_word = tok(pieces, add_special_tokens=False)["input_ids"]
    content, framed, first = [t for ids in per_word for t in ids], tok(pieces[0])["input_ids"], per_word[0]
    at = next((k for k in range(len(framed) - len(first) + 1) if framed[k:k + len(first)] == first), None)
    pre, post = framed[:at or 0], framed[(at or 0) + len(first):]
    room, out, end = max_len - len(pre) - len(post), [], 0
    if at is None or room < 1 or "".join(pieces) != prepare_context(words) \
            or tok(prepare_context(words), add_special_tokens=False, verbose=False)["input_ids"] != content:
        return None
    for ids in per_word:
        end += len(ids)
        over = max(0, end - room)
        kept = content[over:end] if tok.truncation_side == "left" else content[:min(end, room)]
        out.append((pre + kept + post, over + (len(pre) + len(post)) * -(-over // room)))  # pieces framed
    last = len(out) - 1                                     # checked on 20 contexts, where it overflows too
    first_over = next((i for i, (_, over) in enumerate(out) if over), last)
    check = sorted({*np.linspace(0, last, 18).astype(int), first_over, min(first_over + 1, last)})
    whole = _tokenized_whole(tok, words, max_len, False, check)
    return out if all(got == out[i] for i, got in zip(check, whole)) else None


def _surprisal_jobs(inputs) -> list[tuple[list[int], list]]:
    """-> [(window ids, [(word, target positions)])], one per distinct window (T5 truncates on the right)."""
    jobs = {}
    for word, (ids, n_new) in enumerate(inputs):
        if n_new:
            jobs.setdefault(tuple(ids), []).append((word, list(range(len(ids) - n_new, len(ids)))))
    return [(list(ids), reads) for ids, reads in jobs.items()]


def surprisal(model: str, words: list[str], *, device: str = "auto", dtype: str = "float32",
              batch_size: int = 8, cache_dir: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """Bits of every word given the words before it -> (n_words,) float64, as Brain-Score 2023's digest_text
    and estimate_reading_times (1041be4 model_helpers/huggingface.py): the summed -log2 p of the tokens word i
    added to prepare_context(words[:i + 1]), truncated (NaN: none). T5 as PR #194. Arguments as extract()."""
    info, words, ident, batch_size, _, device = _begin(model, words, "word", dtype, batch_size, device,
                                                       strip=True)

    def compute():
        tok, net, config = _load(info, ident["weights"], device, dtype, cache_dir, lm_head=True)
        if not getattr(tok, "is_fast", False):
            raise ValueError(f"{info.name}: Brain-Score counts truncated tokens with a fast (Rust) tokenizer "
                             "and none loaded: save the model's tokenizer.json beside it")
        jobs = _surprisal_jobs(_word_inputs(tok, words, tok.model_max_length, progress))
        bits = np.full(len(words), np.nan)
        for batch, out in _run(net, _kind(config), jobs, batch_size, progress=progress, desc=info.name):
            for r, (ids, reads) in enumerate(batch):
                for w, ps in reads:    # token p predicted at p - 1; cross_entropy(reduction='sum') / log 2
                    logp = torch.log_softmax(out.logits[r, ps[0] - 1:ps[-1]].float(), -1)      # (n, vocab)
                    bits[w] = -logp[range(len(ps)), ids[ps[0]:ps[-1] + 1]].sum().item() / np.log(2)
        return bits
    return _cached(cache_dir, info, ident, compute, nan_ok=True, kind="surprisal", texts=words)
