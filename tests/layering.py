#!/usr/bin/env python3
"""The `layering` test: every header of include/hashee/ includes only headers of its own layer
or of the layers below it, and no other layer's detail/ folder (core/detail/ holds the helpers
every layer shares). The layers, lowest first (docs/architecture.md):

    core  <  io, text  <  backend  <  model  <  hash  <  exit  <  train  <  eval  <  hashee.hpp

io and text are side by side: neither sees the other. Prints every edge that breaks a rule
and exits 1 if there is one.

    python3 tests/layering.py [INCLUDE_DIR]      (default: include/ beside tests/)
"""
import pathlib
import re
import sys

RANK = {"core": 0, "io": 1, "text": 1, "backend": 2, "model": 3, "hash": 4, "exit": 5, "train": 6, "eval": 7}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]hashee/([^>"]+)[>"]', re.M)


def layer_of(rel):
    """'model/encoder.hpp' -> 'model'; 'hashee.hpp' -> None (the umbrella, on top)."""
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else None


def check(root):
    problems, headers = [], sorted(p for p in root.rglob("*") if p.suffix in (".hpp", ".cuh", ".h"))
    if not headers:
        return [f"{root}: no headers found"]
    for path in headers:
        rel = path.relative_to(root).as_posix()
        layer = layer_of(rel)
        if layer is not None and layer not in RANK:
            problems.append(f"{rel}: folder '{layer}' is not a layer ({', '.join(RANK)})")
            continue
        for target in INCLUDE.findall(path.read_text(encoding="utf-8")):
            if not (root / target).exists():
                problems.append(f"{rel}: includes hashee/{target}, which does not exist")
                continue
            to = layer_of(target)
            if to is None:
                problems.append(f"{rel}: includes the umbrella hashee/{target}")
                continue
            private = "/detail/" in target and to != "core"
            if layer is None:  # the umbrella: every public header, no detail
                if private:
                    problems.append(f"{rel}: the umbrella includes the detail header hashee/{target}")
                continue
            if to == layer:
                continue
            if private:
                problems.append(f"{rel}: includes hashee/{target}, a detail header of layer '{to}'")
            elif RANK[to] > RANK[layer]:
                problems.append(f"{rel} (layer '{layer}') includes hashee/{target} of the higher layer '{to}'")
            elif RANK[to] == RANK[layer]:
                problems.append(f"{rel} (layer '{layer}') includes hashee/{target} of the side layer '{to}'")
    return problems


def main():
    here = pathlib.Path(__file__).resolve().parent
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent / "include"
    root = root / "hashee"
    problems = check(root)
    for p in problems:
        print(f"layering: {p}")
    print(f"layering: {len(problems)} edge(s) against the layers" if problems else "layering: every include runs downward")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
