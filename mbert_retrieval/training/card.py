"""The model card (``README.md`` of a trained model): recipe, data, batch semantics, training time, eval
numbers during training, and an Evaluation section that ``record_eval_in_card`` fills in after an eval.
The training library's own card is kept below ours (``write_model_card``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.io import write_text
from mbert_retrieval.recipes import Recipe, dump_recipe

CARD_EVAL_START = "<!-- mbert-retrieval:eval:start -->"
CARD_EVAL_END = "<!-- mbert-retrieval:eval:end -->"


def model_card(
    recipe: Recipe,
    *,
    batch: dict[str, Any],
    rows: int,
    columns: list[str],
    seconds: float,
    log_history: list[dict[str, Any]],
    best_checkpoint: str | None = None,
) -> str:
    """The README.md of a trained model: recipe (resolved YAML), data, batch semantics, training
    time, evaluation during training, and a section ``eval_card_section`` fills in later."""
    d = recipe.data.train
    where = d.path or f"{d.hub_id}" + (f" ({d.subset})" if d.subset else "")
    losses = [row for row in log_history if "loss" in row]
    evals = [row for row in log_history if any(k.endswith("ndcg@10") for k in row)]
    steps = max((int(row.get("step", 0)) for row in log_history), default=0)
    lines = [
        f"# {recipe.name}",
        "",
        recipe.description or "",
        "",
        f"Trained with `mbert-retrieval train` ({recipe.kind}, loss `{recipe.loss.name}`) from `{recipe.model.base}`.",
        "",
        "## Data",
        "",
        f"- source `{d.source}`: {where}" + (f", split {d.split}" if d.source == "beir-qrels" else ""),
        f"- {rows:,} training rows, columns {', '.join(columns)}" + (f" (first {d.max_rows:,})" if d.max_rows else ""),
        "",
        "## Batch",
        "",
        *[f"- {k.replace('_', ' ')}: {v}" for k, v in batch.items()],
        *([f"- recipe intent: {recipe.intent}"] if recipe.intent else []),
        "",
        "## Training",
        "",
        f"- {steps} optimizer steps in {seconds / 60:.1f} min ({seconds:.0f} s wall time)",
        f"- learning rate {recipe.training.learning_rate:g}, warmup {recipe.training.warmup_ratio:g}, "
        f"schedule {recipe.training.lr_scheduler}, seed {recipe.seed}",
    ]
    if losses:
        lines.append(
            f"- loss: first logged {losses[0]['loss']:.4f} (step {losses[0]['step']}), last "
            f"{losses[-1]['loss']:.4f} (step {losses[-1]['step']})"
        )
    lines += ["", "## Evaluation during training", ""]
    if evals:
        data_eval = recipe.data.eval
        assert data_eval is not None
        lines += [
            f"nDCG@10 on `{data_eval.beir}` ({data_eval.split}), exact search:",
            "",
            "| step | nDCG@10 |",
            "|---:|---:|",
        ]
        for row in evals:
            value = next(v for k, v in row.items() if k.endswith("ndcg@10"))
            lines.append(f"| {row.get('step')} | {value:.4f} |")
        if best_checkpoint:
            lines += ["", f"Kept: the best checkpoint ({Path(best_checkpoint).name})."]
    else:
        lines.append("None (the recipe has no `data.eval`).")
    lines += [
        "",
        "## Evaluation",
        "",
        CARD_EVAL_START,
        "Not evaluated yet: `mbert-retrieval eval ... --model THIS_FOLDER --out OUT`, then "
        "`mbert-retrieval card THIS_FOLDER --eval OUT` records the numbers here.",
        CARD_EVAL_END,
        "",
        "## Recipe (resolved)",
        "",
        "```yaml",
        dump_recipe(recipe).rstrip(),
        "```",
    ]
    return "\n".join(lines) + "\n"


def eval_card_section(results: dict[str, Any], source: str) -> str:
    """Markdown for an eval pipeline's ``results.json``: one row per dataset, the main metric first."""
    metrics = results.get("metric_names") or sorted({m for v in results["metrics"].values() for m in v})
    index = results.get("index", {}).get("name", "?")
    lines = [
        f"Suite `{results.get('suite')}`, index `{index}` (results: `{source}`):",
        "",
        "| dataset | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for name, values in results["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(f"{values[m]:.4f}" if m in values else "—" for m in metrics) + " |")
    return "\n".join(lines)


def record_eval_in_card(model_dir: str | Path, eval_out: str | Path) -> Path:
    """Put the numbers of ``eval_out/results.json`` (an eval of this model) into the model card's
    Evaluation section, replacing what an earlier call put there. Returns the card's path."""
    from mbert_retrieval.core.errors import DataError

    model_dir, eval_out = Path(model_dir), Path(eval_out)
    card = model_dir / "README.md"
    results_path = eval_out / "results.json" if eval_out.is_dir() else eval_out
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(results_path, "no eval results here (run `mbert-retrieval eval` first)") from None
    except json.JSONDecodeError as e:
        raise DataError(results_path, f"malformed JSON: {e.msg}", line=e.lineno) from None
    if not card.is_file():
        raise DataError(card, "no model card (not a folder written by `mbert-retrieval train`)")
    text = card.read_text(encoding="utf-8")
    if CARD_EVAL_START not in text or CARD_EVAL_END not in text:
        raise DataError(card, "model card has no mbert-retrieval Evaluation section")
    model = str(results.get("model", ""))
    if model and Path(model).expanduser().resolve() != model_dir.resolve():
        raise ConfigError(f"{results_path} evaluates {model}, not {model_dir}")
    head, rest = text.split(CARD_EVAL_START, 1)
    _, tail = rest.split(CARD_EVAL_END, 1)
    section = eval_card_section(results, str(results_path))
    write_text(card, f"{head}{CARD_EVAL_START}\n{section}\n{CARD_EVAL_END}{tail}")
    return card


def write_model_card(model_dir: Path, card: str) -> None:
    """Write ``card`` as ``model_dir/README.md``; the card the training library generated there is kept
    below ours, its front matter first."""
    generated = model_dir / "README.md"
    theirs = generated.read_text(encoding="utf-8") if generated.is_file() else ""
    front = ""
    if theirs.startswith("---\n") and "\n---\n" in theirs[4:]:
        end = theirs.index("\n---\n", 4) + 5
        front, theirs = theirs[:end], theirs[end:]
    below = f"\n---\n\n*Card generated by the training library:*\n\n{theirs.lstrip()}" if theirs.strip() else ""
    write_text(generated, front + card + below)
