"""A run's claims table: the paper's claims checked on the run's own numbers (issue 22, item 4).

Reads what stages 04-09 saved (``figures/<profile>/*.csv``, ``runs/<profile>/*/summary.json``),
asks ``laionet.method.claims`` for the verdicts, and writes ``figures/<profile>/claims.json``;
the run's report page opens with the same table. A stage that did not run leaves its claims
"n/a".

    python -m laionet.pipeline.claims --profile demo
"""

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from laionet.method.claims import paper_claims
from laionet.pipeline.profiles import profile_name
from laionet.util.files import read_json, write_text
from laionet.util.paths import project_root

CLAIMS_JSON = "claims.json"
# the stage products the claims read: (argument, stage folder or None for the figure folder, file)
SOURCES = {
    "acc": (None, "04_accuracy.csv"),
    "drops": (None, "04_accuracy_drops.csv"),
    "intra": (None, "05_intra_class_similarity_summary.csv"),
    "v2_props": (None, "06_v2_proportions.csv"),
    "v2_acc": (None, "06_accuracy_laionet_vs_v2.csv"),
    "avg_similarity": (None, "07_B15_avg_intra_class_similarity.csv"),
    "s07": ("07_image_to_selection_link", "summary.json"),
    "s08": ("08_text_alone", "summary.json"),
    "s09": ("09_text_retrieved_imagenet", "summary.json"),
}


def _read(path: Path) -> Any:
    if not path.is_file():
        return None
    if path.suffix == ".json":
        return read_json(path)
    return pd.read_csv(path)


def run_claims(profile_key: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """(the claims table of the profile's latest runs, argument -> the file it was read from)."""
    name = profile_name(profile_key)
    figs, runs = project_root() / "figures" / name, project_root() / "runs" / name
    paths = {arg: (runs / stage if stage else figs) / file for arg, (stage, file) in SOURCES.items()}
    data = {arg: _read(p) for arg, p in paths.items()}
    if data["intra"] is not None:  # the first (main) encoder's row
        data["intra"] = data["intra"].iloc[0].to_dict() if len(data["intra"]) else None
    table = paper_claims(**data)
    return table, {arg: str(p) for arg, p in paths.items() if data[arg] is not None}


def write_claims(profile_key: str) -> tuple[pd.DataFrame, Path]:
    """The claims table, also written to ``figures/<profile>/claims.json``."""
    table, sources = run_claims(profile_key)
    name = profile_name(profile_key)
    dest = project_root() / "figures" / name / CLAIMS_JSON
    rows = json.loads(table.to_json(orient="records"))  # NaN -> null: strict JSON
    write_text(json.dumps({"profile": name, "claims": rows, "read_from": sources}, indent=1)
               + "\n", dest)
    return table, dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m laionet.pipeline.claims", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo", help="profile name or YAML path (default demo)")
    table, dest = write_claims(ap.parse_args(argv).profile)
    with pd.option_context("display.width", 200, "display.max_colwidth", 40):
        print(table[["claim", "paper", "value", "lo", "hi", "direction", "size"]].to_string(index=False))
    print(dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
