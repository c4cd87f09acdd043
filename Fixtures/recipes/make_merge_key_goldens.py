"""Golden results for YAML merge keys (<<), from PyYAML, the loader mergekit reads recipes with.

Loads every Fixtures/recipes/merge_keys/*.yml with yaml.safe_load and writes merge_keys.json:
{case name: the loaded document, every scalar as str(), key order kept} or {"error": true} when
PyYAML refuses it. Tests/MergeKitTests/Recipes/RecipeYAMLTests.swift resolves the same files with
MergeKit's recipe reader and compares.

    python3 Fixtures/recipes/make_merge_key_goldens.py      (PyYAML 6.0.3 was used)
"""
import json
import pathlib

import yaml

here = pathlib.Path(__file__).parent


def plain(value):
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return str(value)


goldens = {}
for path in sorted((here / "merge_keys").glob("*.yml")):
    try:
        goldens[path.stem] = plain(yaml.safe_load(path.read_text()))
    except yaml.YAMLError:
        goldens[path.stem] = {"error": True}
goldens["pyyaml"] = yaml.__version__
(here / "merge_keys.json").write_text(json.dumps(goldens, indent=1) + "\n")
