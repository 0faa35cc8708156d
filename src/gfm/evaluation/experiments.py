"""The experiment runner behind the headline table: every stage, per seed.

A run settings document (``gfm/configs/<name>.yaml``) fixes the dataset,
the split protocol, the stage settings and the products. For each document
and seed, :func:`run_seed` loads the dataset and splits it. It embeds the
items with the LLM, with tag text from the training split, and seeds whose
item texts are equal reuse one embedding. It then builds the
co-interaction graph on the training part, trains the HGNN, trains the
two-tower model of each product (and the one without HGNN inputs when
``two-tower`` is among the evaluation's baselines) and evaluates them
beside the baselines. The seed replaces
``split.seed``, ``hgnn.seed`` and ``twotower.seed``. :func:`run_experiments`
averages the seeds and writes the report.

Each finished seed leaves ``seed.json`` in its folder. With ``resume``, a
seed whose ``seed.json`` records the same data (digests of the tables),
run settings, evaluation settings and seed is read back instead of run
again, so an interrupted multi-hour run continues where it stopped.
Settings that only place or publish a run (``serving``, ``deploy``,
``hgnn.ray_temp_dir``) do not count. The file does not record the code
version: after changing the code, use a new working folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gfm import storage
from gfm.embeddings import ItemEmbeddings
from gfm.evaluation.config import EvaluationConfig
from gfm.evaluation.report import (
    aggregate_seeds,
    excluded_item_notes,
    json_ready_rows,
    write_report,
)
from gfm.evaluation.stage import evaluate_products

logger = logging.getLogger(__name__)

DEFAULT_CONFIGS = ("movielens-1m", "lastfm-2k")
DEFAULT_SEEDS = (0, 1, 2)
SEED_FILE = "seed.json"


@dataclass
class SeedRun:
    """Outputs of one seed of one run settings document.

    Attributes:
        protocol: the run settings' name, for example ``movielens-1m``.
        seed: the seed.
        rows: result rows of every product, with ``protocol`` and ``seed``.
        stage_seconds: wall time of each stage, in seconds.
        timings: per product and model, ``fit_s``, ``score_s`` and ``users``.
        counts: per product, the evaluation context's counts and drops.
        slices: slice name to its description.
        resumed: read back from an earlier run's ``seed.json``.
    """

    protocol: str
    seed: int
    rows: list[dict[str, Any]]
    stage_seconds: dict[str, float]
    timings: dict[str, dict[str, dict[str, float]]]
    counts: dict[str, Any] = field(default_factory=dict)
    slices: dict[str, str] = field(default_factory=dict)
    resumed: bool = False


SEED_RUN_FIELDS = tuple(f.name for f in fields(SeedRun) if f.name != "resumed")


def _timed(stage_seconds: dict[str, float], name: str, started: float) -> None:
    stage_seconds[name] = stage_seconds.get(name, 0.0) + time.monotonic() - started
    logger.info("stage %s took %.1f s", name, stage_seconds[name])


def llm_embeddings(dataset: Any, split: Any, settings: Mapping[str, Any],
                   folder: Path) -> ItemEmbeddings:
    """Return the LLM features of every catalogue item, reused from ``folder`` when valid.

    The items are those of :func:`gfm.data.item_text.items_for_split`, so
    tag text uses the training split only. The features depend on those
    items and the featurize settings, so a saved artifact is reused only
    when its metadata records the same fingerprint of both. Seeds whose
    splits give the same item texts (Last.fm-2k splits tags by date) share
    one artifact.
    """
    from gfm.data.item_text import items_for_split
    from gfm.featurize import FeaturizeConfig, featurize_items

    items, item_text = items_for_split(dataset, split)
    fingerprint = _features_fingerprint(items, settings)
    if (folder / "metadata.json").exists():
        cached = ItemEmbeddings.load(folder)
        if cached.metadata.get("features_fingerprint") == fingerprint:
            logger.info("reusing the LLM features of %d items from %s", len(cached), folder)
            return cached
        logger.warning("the LLM features in %s belong to other item texts or settings; "
                       "recomputing", folder)
    embeddings = featurize_items(items, FeaturizeConfig.from_dict(dict(settings)))
    embeddings.metadata.update(features_fingerprint=fingerprint, item_text=item_text)
    embeddings.save(folder)
    return embeddings


def _features_fingerprint(items: Any, settings: Mapping[str, Any]) -> str:
    text = json.dumps({"items": items.to_dict(orient="records"), "settings": settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Settings that cannot change a seed's results: the seed replaces the
# stage seeds, and the rest only place or publish the run.
_PLACEMENT_SECTIONS = {"serving", "deploy"}
_PLACEMENT_KEYS = {"split": {"seed"}, "hgnn": {"seed", "ray_temp_dir"},
                   "twotower": {"seed"}}


def _json_data(value: Any) -> Any:
    """Return ``value`` as it reads back from JSON, so saved and new identities compare."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _seed_identity(run_config: Any, seed: int, evaluation: EvaluationConfig,
                   dataset: Any) -> dict[str, Any]:
    """Return what a seed's results depend on, section by section, as JSON data.

    The data enters as digests of the three tables, so a resumed seed is
    never one computed on other interactions.
    """
    import pyarrow as pa

    identity: dict[str, Any] = {}
    for section, value in run_config.to_dict().items():
        if section in _PLACEMENT_SECTIONS or section == "evaluation":
            continue
        skipped = _PLACEMENT_KEYS.get(section, set())
        if isinstance(value, Mapping):
            value = {key: item for key, item in value.items() if key not in skipped}
        identity[section] = _json_data(value)
    # The merged settings, so an override equal to a default changes nothing.
    identity["evaluation"] = _json_data(evaluation.to_dict())
    identity["seed"] = seed

    identity["data"] = {}
    for name in ("items", "interactions", "users"):
        table = pa.Table.from_pandas(getattr(dataset, name), preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        identity["data"][name] = hashlib.sha256(sink.getvalue()).hexdigest()
    return identity


def _finished_seed(path: Path, identity: Mapping[str, Any], protocol: str,
                   seed: int) -> SeedRun | None:
    """Return the SeedRun saved in ``path`` when it was made with ``identity``."""
    if not path.exists():
        return None
    try:
        saved = storage.read_json(path)
        changed = sorted(key for key in set(identity) | set(saved["identity"])
                         if identity.get(key) != saved["identity"].get(key))
        if changed:
            logger.warning("%s was made with other %s; running the seed again",
                           path, ", ".join(changed))
            return None
        finished = SeedRun(**{name: saved[name] for name in SEED_RUN_FIELDS},
                           resumed=True)
        _check_seed_run(finished, protocol, seed)
        return finished
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as error:
        # A file cut short by a killed process, or not written by run_seed.
        logger.warning("invalid %s (%r); running the seed again", path, error)
        return None


def _check_seed_run(run: SeedRun, protocol: str, seed: int) -> None:
    """Raise ValueError unless ``run`` is a well-formed result of ``protocol`` and ``seed``."""
    if run.protocol != protocol or run.seed != seed:
        raise ValueError(f"it contains {run.protocol!r} seed {run.seed!r}, not "
                         f"{protocol!r} seed {seed}")
    if not isinstance(run.rows, list) or not run.rows:
        raise ValueError("its result rows are missing")
    for row in run.rows:
        missing = {"model", "product", "slice", "num_users"} - set(row)
        if missing:
            raise ValueError(f"a result row is missing {sorted(missing)}")


def dataset_options(run_config: Any) -> dict[str, Any]:
    """Return the ``load_dataset`` options of a run settings document.

    Raises:
        ValueError: if ``dataset.uri`` is missing for ``files`` or set for a
            named dataset.
    """
    from gfm.data import loader_options

    name = str(run_config.dataset["name"])
    uri = run_config.dataset.get("uri") or ""
    if name == "files" and not uri:
        raise ValueError("dataset 'files' needs dataset.uri, the folder of its "
                         "tables, for example --override dataset.uri=/data/tables")
    return loader_options(name, uri, run_config.dataset.get("options"))


def prepare_experiments(configs: Sequence[str], seeds: Sequence[int],
                        workdir: str | Path, out_uri: str | Path | None = None,
                        overrides: Mapping[str, Any] | None = None) -> list[Any]:
    """Load and check every run settings document before any seed runs.

    Returns:
        The validated ``RunConfig`` of each entry of ``configs``.

    Raises:
        ValueError: for an empty or repeated config or seed list, a negative
            seed, two documents of one dataset name (their seeds would share
            folders and be averaged together), invalid settings, or a
            working or report folder that cannot be written.
    """
    from gfm.pipelines.run_config import load_run_config

    if not configs:
        raise ValueError("configs is empty; pass at least one run settings name, "
                         "for example movielens-1m")
    if not seeds:
        raise ValueError("seeds is empty; pass at least one seed, for example [0, 1, 2]")
    repeated = sorted({seed for seed in seeds if list(seeds).count(seed) > 1})
    if repeated:
        raise ValueError(f"seeds {repeated} are repeated; each seed counts once in "
                         "the mean, so list it once")
    negative = [seed for seed in seeds if not isinstance(seed, int) or seed < 0]
    if negative:
        raise ValueError(f"seeds {negative} are invalid; use integers of 0 or more")
    if storage.is_gcs(workdir):
        raise ValueError(f"workdir {str(workdir)!r} must be a local folder: Ray and "
                         "the graph files are written there; --out may be gs://")
    if Path(workdir).exists() and not Path(workdir).is_dir():
        raise ValueError(f"workdir {str(workdir)!r} is a file; pass a folder")
    if out_uri is not None and not storage.is_gcs(out_uri) and Path(out_uri).is_file():
        raise ValueError(f"out {str(out_uri)!r} is a file; pass a folder for the report")

    run_configs, names = [], {}
    for name in configs:
        run_config = load_run_config(name)
        if overrides:
            run_config = run_config.with_overrides(overrides)
        run_config.validate()
        dataset_options(run_config)
        dataset = str(run_config.dataset["name"])
        if dataset in names:
            raise ValueError(
                f"configs {names[dataset]!r} and {name!r} both use dataset {dataset!r}; "
                f"their seeds would share {Path(workdir) / dataset} and be averaged "
                "together, so run them with separate --workdir folders")
        names[dataset] = name
        run_configs.append(run_config)
    return run_configs


def run_seed(run_config: Any, seed: int, workdir: str | Path,
             evaluation_overrides: Mapping[str, Any] | None = None,
             resume: bool = False) -> SeedRun:
    """Run every stage of one run settings document with one seed.

    Args:
        run_config: a ``gfm.pipelines.run_config.RunConfig``.
        seed: replaces the split, HGNN and two-tower seeds.
        workdir: folder for the LLM features (shared by seeds), the graph and
            the HGNN outputs (one subfolder per protocol and seed).
        evaluation_overrides: evaluation settings laid over the document's.
        resume: return the results saved by an earlier call with the same
            data, settings, seed and evaluation settings (``seed.json``)
            instead of running.

    Returns:
        The seed's rows, stage times and counts.
    """
    from gfm.data import load_dataset
    from gfm.data.splits import split_dataset
    from gfm.graph import GraphConfig, build_graph, save_graph
    from gfm.hgnn import HGNNConfig, train_hgnn
    from gfm.twotower import TwoTowerConfig, train_two_tower

    workdir = Path(workdir)
    protocol = str(run_config.dataset["name"])
    run_dir = workdir / protocol / f"seed-{seed}"
    evaluation = EvaluationConfig.from_dict(
        dict(run_config.evaluation, **dict(evaluation_overrides or {})))
    stage_seconds: dict[str, float] = {}

    started = time.monotonic()
    dataset = load_dataset(protocol, strict=bool(run_config.dataset.get("strict", False)),
                           **dataset_options(run_config))
    identity = _seed_identity(run_config, seed, evaluation, dataset)
    if resume:
        finished = _finished_seed(run_dir / SEED_FILE, identity, protocol, seed)
        if finished is not None:
            logger.info("experiment %s, seed %d: reusing the results in %s",
                        protocol, seed, run_dir / SEED_FILE)
            return finished
    logger.info("experiment %s, seed %d: starting in %s", protocol, seed, run_dir)
    split = split_dataset(dataset, dict(run_config.split, seed=seed))
    _timed(stage_seconds, "data", started)

    started = time.monotonic()
    llm = llm_embeddings(dataset, split, run_config.featurize, workdir / protocol / "llm")
    _timed(stage_seconds, "featurize", started)

    started = time.monotonic()
    graph = build_graph(split.train, dataset.items, llm,
                        GraphConfig.from_dict(run_config.graph))
    graph_uri = str(run_dir / "graph")
    save_graph(graph, graph_uri)
    _timed(stage_seconds, "graph", started)

    started = time.monotonic()
    hgnn_settings = dict(run_config.hgnn, seed=seed)
    hgnn_settings.setdefault("ray_temp_dir", f"/tmp/gfm-eval-ray-{seed}")
    hgnn = train_hgnn(graph_uri, str(run_dir / "hgnn"),
                      HGNNConfig.from_dict(hgnn_settings)).embeddings
    _timed(stage_seconds, "hgnn", started)

    # The two-tower without HGNN inputs is trained only as a baseline.
    variants = (True, False) if "two-tower" in evaluation.baselines else (True,)
    models, baselines = [], {}
    for product in run_config.products:
        for use_hgnn in variants:
            started = time.monotonic()
            settings = dict(run_config.twotower, seed=seed, use_hgnn=use_hgnn, use_llm=True)
            model = train_two_tower(
                product=product.name, item_types=product.item_types, train=split.train,
                valid=split.valid, items=dataset.items, users=dataset.users, hgnn=hgnn,
                llm=llm, config=TwoTowerConfig.from_dict(settings),
            )
            _timed(stage_seconds, "twotower_hgnn" if use_hgnn else "twotower_llm", started)
            if use_hgnn:
                models.append(model)
            else:
                baselines[product.name] = model

    started = time.monotonic()
    results = evaluate_products(dataset, split, llm, hgnn, models, evaluation,
                                baseline_models=baselines)
    _timed(stage_seconds, "evaluate", started)

    rows = [dict(row, protocol=protocol, seed=seed) for r in results for row in r.rows]
    storage.write_json(run_dir / "rows.json", json_ready_rows(rows), allow_nan=False)
    finished = SeedRun(
        protocol=protocol, seed=seed, rows=rows, stage_seconds=stage_seconds,
        timings={r.product: r.timings for r in results},
        counts={r.product: r.report for r in results},
        slices={name: text for r in results for name, text in r.slices.items()},
    )
    # NaN stays NaN here (slices without users), so a resumed seed averages
    # exactly as a fresh one. rows.json is the strict-JSON copy for readers.
    storage.write_json(run_dir / SEED_FILE, dict(
        {name: getattr(finished, name) for name in SEED_RUN_FIELDS},
        identity=identity))
    return finished


def run_experiments(
    configs: Sequence[str] = DEFAULT_CONFIGS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    workdir: str | Path = "experiments",
    out_uri: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    evaluation_overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run every seed of every run settings document and write the averaged report.

    Args:
        configs: shipped run settings names or YAML paths.
        seeds: seeds to average over.
        workdir: the runs' working folder.
        out_uri: report folder; default ``<workdir>/report``.
        overrides: dotted overrides applied to every document, for example
            ``{"hgnn.max_epochs": 2}``.
        evaluation_overrides: evaluation settings laid over each document's.
        resume: reuse each seed that an earlier run finished with the same
            data and settings (see :func:`run_seed`).

    Raises:
        ValueError: from :func:`prepare_experiments`, before any seed runs.

    Returns:
        The ``metrics.json`` document: averaged ``rows``, ``per_seed`` rows,
        ``stage_seconds`` and ``timings`` per protocol and seed,
        ``wall_seconds`` of this call and the ``resumed`` seeds, whose stage
        times are those of the run that made them.
    """
    run_configs = prepare_experiments(configs, seeds, workdir, out_uri, overrides)
    started = time.monotonic()
    runs: list[SeedRun] = []
    for run_config in run_configs:
        for seed in seeds:
            runs.append(run_seed(run_config, seed, workdir, evaluation_overrides, resume))

    per_seed = [row for run in runs for row in run.rows]
    rows = aggregate_seeds(per_seed)
    slices = {name: text for run in runs for name, text in run.slices.items()}
    extra = {
        "configs": list(configs),
        "seeds": list(seeds),
        "overrides": dict(overrides or {}),
        "per_seed": json_ready_rows(per_seed),
        "stage_seconds": {f"{r.protocol}/seed-{r.seed}": r.stage_seconds for r in runs},
        "timings": {f"{r.protocol}/seed-{r.seed}": r.timings for r in runs},
        "counts": {f"{r.protocol}/seed-{r.seed}": r.counts for r in runs},
        "wall_seconds": time.monotonic() - started,
        "resumed": [f"{r.protocol}/seed-{r.seed}" for r in runs if r.resumed],
    }
    out_uri = out_uri or Path(workdir) / "report"
    notes = excluded_item_notes({
        f"{run.protocol}, seed {run.seed}, product {product}": report
        for run in runs for product, report in run.counts.items()
    })
    document = write_report(out_uri, rows, extra, slices, title="gfm comparison",
                            notes=notes)
    logger.info("experiments done in %.0f s: %d runs, report in %s",
                extra["wall_seconds"], len(runs), out_uri)
    return document
